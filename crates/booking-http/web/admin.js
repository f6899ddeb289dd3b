// The operator's live view: the waiting room's figures, pause and resume, the
// admission policy, and sales and revenue per date. Calls the admin API with the
// key the operator typed, kept in this tab's sessionStorage (never in the URL).
"use strict";

(() => {
  const { api, code, message, el, amount, $ } = Booking;

  const KEY = "booking.adminKey";
  const EVERY_MS = 1000;
  const MAX_CONCERTS = 500;

  const S = {
    key: null,
    timer: null,
    concerts: [], // known concert ids, 1.. in order
    policyDirty: false,
    lastPolicy: null,
  };

  function notice(text, kind) {
    const n = $("notice");
    n.textContent = text;
    n.className = "notice " + (kind || "");
    n.hidden = !text;
  }

  function showKey(text) {
    clearTimeout(S.timer);
    S.key = null;
    sessionStorage.removeItem(KEY);
    $("view-key").hidden = false;
    $("view-dash").hidden = true;
    if (text) notice(text, "bad");
    $("key").focus();
  }

  function showDash() {
    $("view-key").hidden = true;
    $("view-dash").hidden = false;
  }

  // Handles a refused key. Returns true when it did.
  function refused(r) {
    if (r.status === 401) {
      showKey("That admin key was refused. Enter the key the server printed at start.");
      return true;
    }
    if (code(r) === "admin_disabled") {
      showKey("This server has no admin key configured, so its admin API is off.");
      return true;
    }
    return false;
  }

  async function refreshQueue() {
    const r = await api("GET", "/v1/admin/queue", { auth: S.key });
    if (!r.ok) {
      if (!refused(r)) notice(r.status === 0 ? "The server cannot be reached." : "Could not read the queue: " + message(r), "bad");
      return false;
    }
    const q = r.body;
    showDash();
    $("q-waiting").textContent = amount(q.waiting);
    $("q-serving").textContent = amount(q.serving);
    $("q-issued").textContent = amount(q.issued);
    $("q-active").textContent = amount(q.active) + " / " + (q.policy.max_active == null ? "no cap" : amount(q.policy.max_active));
    $("q-rate").textContent = q.admit_rate_per_sec.toFixed(1);
    const parts = [];
    if (q.policy.batch != null) parts.push(`${amount(q.policy.batch)} every ${q.policy.interval_ms} ms`);
    else parts.push(`every ${q.policy.interval_ms} ms`);
    if (q.policy.max_active != null) parts.push(`cap ${amount(q.policy.max_active)}`);
    $("q-policy").textContent = parts.join(", ");
    const pill = $("admission");
    pill.textContent = q.paused ? "paused" : "admitting";
    pill.className = "pill " + (q.paused ? "off" : "on");
    $("pause").disabled = q.paused;
    $("resume").disabled = !q.paused;
    const p = JSON.stringify(q.policy);
    if (!S.policyDirty && p !== S.lastPolicy) {
      S.lastPolicy = p;
      $("p-batch").value = q.policy.batch == null ? "" : q.policy.batch;
      $("p-every").value = q.policy.interval_ms;
      $("p-max").value = q.policy.max_active == null ? "" : q.policy.max_active;
    }
    return true;
  }

  // Concert ids are issued 1, 2, 3...: the known ones, then one more each round to
  // find new concerts.
  async function sales(id) {
    return api("GET", `/v1/admin/concerts/${id}/sales`, { auth: S.key });
  }

  async function refreshSales() {
    const rows = [];
    for (const id of S.concerts) {
      const r = await sales(id);
      if (!r.ok) {
        refused(r);
        return;
      }
      rows.push({ id, dates: r.body || [] });
    }
    for (let id = S.concerts.length + 1; id <= MAX_CONCERTS; id++) {
      const r = await sales(id);
      if (!r.ok) {
        if (r.status !== 404) refused(r);
        break;
      }
      S.concerts.push(id);
      rows.push({ id, dates: r.body || [] });
    }
    renderSales(rows);
  }

  function renderSales(concerts) {
    const box = $("sales");
    if (!concerts.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No concert yet." }));
      return;
    }
    const all = { sold: 0, held: 0, free: 0, revenue: 0 };
    const blocks = concerts.map(({ id, dates }) => {
      const sum = { sold: 0, held: 0, free: 0, revenue: 0 };
      const body = dates.map((d) => {
        sum.sold += d.seats_sold;
        sum.held += d.seats_held;
        sum.free += d.seats_free;
        sum.revenue += d.revenue;
        return el(
          "tr",
          { "data-date": d.date, "data-concert": id },
          el("th", { scope: "row", text: `${d.date} ${d.starts_at.slice(11, 16)} UTC` }),
          el("td", { class: "num sold", text: amount(d.seats_sold) }),
          el("td", { class: "num held", text: amount(d.seats_held) }),
          el("td", { class: "num free", text: amount(d.seats_free) }),
          el("td", { class: "num revenue", text: amount(d.revenue) }),
        );
      });
      for (const k of Object.keys(all)) all[k] += sum[k];
      return el(
        "div",
        { class: "table-wrap" },
        el(
          "table",
          { "data-concert": id },
          el("caption", { text: `Concert ${id}` }),
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              el("th", { scope: "col", text: "Date" }),
              el("th", { scope: "col", class: "num", text: "Sold" }),
              el("th", { scope: "col", class: "num", text: "Held" }),
              el("th", { scope: "col", class: "num", text: "Free" }),
              el("th", { scope: "col", class: "num", text: "Revenue" }),
            ),
          ),
          el("tbody", {}, ...body),
          el(
            "tfoot",
            {},
            el(
              "tr",
              {},
              el("th", { scope: "row", text: "All dates" }),
              el("td", { class: "num", text: amount(sum.sold) }),
              el("td", { class: "num", text: amount(sum.held) }),
              el("td", { class: "num", text: amount(sum.free) }),
              el("td", { class: "num", text: amount(sum.revenue) }),
            ),
          ),
        ),
      );
    });
    const total = el("p", { class: "money", id: "sales-total" },
      `In all: ${amount(all.sold)} sold, ${amount(all.held)} held, revenue `,
      el("span", { class: "num", id: "revenue-total", text: amount(all.revenue) }));
    box.replaceChildren(total, ...blocks);
  }

  async function round() {
    clearTimeout(S.timer);
    if (!S.key) return;
    if (await refreshQueue()) await refreshSales();
    if (S.key) {
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      S.timer = setTimeout(round, EVERY_MS);
    }
  }

  async function setPaused(paused) {
    const r = await api("POST", `/v1/admin/queue/${paused ? "pause" : "resume"}`, { auth: S.key });
    if (r.ok) notice(paused ? "Admission paused: nobody is let in until you resume." : "Admission resumed.", "ok");
    else if (!refused(r)) notice("Could not change admission: " + message(r), "bad");
    round();
  }

  function optionalInt(id) {
    const v = $(id).value.trim();
    return v === "" ? null : Number(v);
  }

  async function setPolicy(e) {
    e.preventDefault();
    const body = {
      interval_ms: Number($("p-every").value),
      batch: optionalInt("p-batch"),
      max_active: optionalInt("p-max"),
    };
    const r = await api("PUT", "/v1/admin/queue/policy", { auth: S.key, body });
    if (r.ok) {
      S.policyDirty = false;
      S.lastPolicy = null;
      notice("Policy applied.", "ok");
    } else if (!refused(r)) {
      notice("The policy was refused: " + (message(r) || "error " + r.status), "bad");
    }
    round();
  }

  function init() {
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const k = $("key").value.trim();
      if (!k) return;
      S.key = k;
      sessionStorage.setItem(KEY, k);
      $("key").value = "";
      notice("");
      round();
    });
    $("pause").addEventListener("click", () => setPaused(true));
    $("resume").addEventListener("click", () => setPaused(false));
    $("policy-form").addEventListener("submit", setPolicy);
    $("policy-form").addEventListener("input", () => {
      S.policyDirty = true;
    });
    $("forget").addEventListener("click", () => {
      showKey("");
      notice("The key is forgotten in this tab.");
    });
    S.key = sessionStorage.getItem(KEY);
    if (S.key) round();
    else showKey("");
  }

  init();
})();

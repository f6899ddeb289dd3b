// The waiting room and the shop: join the line, wait (pushed updates when the
// server has them, else polling exactly as often as each answer asks), then pick a
// date and a seat, hold, top up, pay, and read the receipt. It only calls the
// public JSON API.
"use strict";

(() => {
  const { api, code, message, retryAfterMs, el, amount, clock, about, uuid, $, serverNow } = Booking;

  const KEY_USER = "booking.user";
  const KEY_TOKEN = "booking.token";
  const KEY_FIRST = "booking.firstPlace";
  const KEY_RECEIPT = "booking.receipt";
  const FINAL = new Set(["active", "sold_out", "expired", "done"]);

  const S = {
    user: null,
    token: null,
    view: null,
    concerts: [],
    concertId: null,
    dates: [],
    date: null,
    seats: [],
    names: new Map(), // schedule id -> "Concert, date"
    holds: new Map(), // reservation id -> hold
    activeUntil: null, // ms, server clock
    balance: null,
    topupKey: uuid(),
    payKeys: new Map(),
    multiPay: false, // whether a payment may cover several holds (reservation_ids)
    busy: false,
    timers: { tick: null, seats: null },
  };

  // --- views and notices ------------------------------------------------------------

  const VIEWS = ["loading", "join", "wait", "soldout", "ended", "shop", "receipt"];

  function show(view) {
    S.view = view;
    for (const v of VIEWS) $("view-" + v).hidden = v !== view;
    if (view !== "shop") stopShopTimers();
  }

  function notice(text, kind) {
    const n = $("notice");
    n.textContent = text;
    n.className = "notice " + (kind || "");
    n.hidden = !text;
  }

  function ended(title, text) {
    watcher.stop();
    $("ended-title").textContent = title;
    $("ended-text").textContent = text;
    show("ended");
  }

  // --- the token ----------------------------------------------------------------------

  function saveToken(token) {
    S.token = token;
    if (token) localStorage.setItem(KEY_TOKEN, token);
    else localStorage.removeItem(KEY_TOKEN);
  }

  async function join() {
    $("join").disabled = true;
    notice("");
    localStorage.removeItem(KEY_RECEIPT);
    const r = await api("POST", "/v1/queue/tokens", { body: { user_id: S.user } });
    $("join").disabled = false;
    if (r.status === 201 && r.body && r.body.token) {
      saveToken(r.body.token);
      onStatus(r.body);
      if (r.body.status === "waiting" || r.body.status === "sold_out") watcher.schedule(r.body.poll_after_ms);
      return;
    }
    if (code(r) === "queue_full") notice("The line is full right now. Please try again in a minute.", "bad");
    else if (code(r) === "rate_limited") notice("Too many requests: please wait a moment and try again.", "bad");
    else if (r.status === 0) notice("The server cannot be reached. Check your connection and try again.", "bad");
    else notice("Could not join the line: " + (message(r) || "error " + r.status), "bad");
  }

  // --- waiting: pushed updates, else paced polling ----------------------------------

  // Where the waiting room stands comes from `GET /v1/queue/events` (Server-Sent
  // Events, one `status` event per change) when the server has it, else from
  // `GET /v1/queue/status`, asked again after exactly the `poll_after_ms` of the
  // previous answer (never sooner). A lost connection is retried with a growing
  // pause (1 s to 20 s), then resumes where it was.
  const watcher = {
    sse: "unknown", // "unknown" | "yes" | "no"
    source: null,
    timer: null,
    failures: 0,
    gotEvent: false,
    pace: 0, // the last answer's poll_after_ms

    stop() {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.source) {
        this.source.close();
        this.source = null;
      }
    },

    // Starts watching now.
    start() {
      this.stop();
      if (!S.token) return;
      if (this.sse !== "no" && typeof EventSource === "function") this.openEvents();
      else this.poll();
    },

    // Watches again after `ms`.
    schedule(ms) {
      this.stop();
      this.timer = setTimeout(() => this.start(), Math.max(0, ms));
    },

    backoff() {
      this.failures += 1;
      return Math.min(20000, 1000 * 2 ** Math.min(this.failures - 1, 5));
    },

    openEvents() {
      const src = new EventSource("/v1/queue/events?token=" + encodeURIComponent(S.token));
      this.source = src;
      this.gotEvent = false;
      src.addEventListener("status", (e) => {
        let dto;
        try {
          dto = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        this.gotEvent = true;
        this.sse = "yes";
        this.failures = 0;
        this.pace = dto.poll_after_ms || 0;
        setNote("Updates arrive as they happen.");
        if (FINAL.has(dto.status)) {
          // The stream ends after a final state: close it before the browser
          // reconnects by itself.
          src.close();
          this.source = null;
          onStatus(dto);
          if (dto.status === "sold_out") this.schedule(dto.poll_after_ms);
        } else {
          onStatus(dto);
        }
      });
      src.onerror = () => {
        if (this.source !== src) return;
        src.close();
        this.source = null;
        if (this.sse === "unknown" && !this.gotEvent) this.probe();
        else this.lost();
      };
    },

    // The stream failed before its first event: does the server have the route?
    async probe() {
      const ctl = new AbortController();
      let status = 0;
      try {
        const res = await fetch("/v1/queue/events", {
          headers: { Authorization: "Bearer " + S.token, Accept: "text/event-stream" },
          signal: ctl.signal,
          cache: "no-store",
        });
        status = res.status;
      } catch (e) {
        status = 0;
      }
      ctl.abort();
      if (status === 404 || status === 405) {
        this.sse = "no";
        this.poll();
      } else if (status === 0) {
        this.lost();
      } else if (status >= 200 && status < 300) {
        this.sse = "yes";
        this.lost();
      } else {
        // 401, 429, 5xx: one status request says what it is and sets the pace.
        this.poll();
      }
    },

    // Tries again after a growing pause, and never sooner than the server's pace:
    // a stream cut again and again must not cost more than polling would.
    lost() {
      const ms = Math.max(this.backoff(), this.pace);
      setNote(`Connection lost: trying again in ${Math.ceil(ms / 1000)} s. You keep your place.`);
      this.schedule(ms);
    },

    async poll() {
      this.stop();
      const token = S.token;
      const r = await api("GET", "/v1/queue/status", { auth: token });
      if (token !== S.token) return; // left or re-joined meanwhile
      if (r.ok && r.body) {
        this.failures = 0;
        this.pace = r.body.poll_after_ms || 0;
        onStatus(r.body);
        if (r.body.status === "waiting" || r.body.status === "sold_out") {
          const ms = Math.max(250, r.body.poll_after_ms);
          if (r.body.status === "waiting") setNote(`Next update in ${Math.ceil(ms / 1000)} s. Keep this page open.`);
          this.timer = setTimeout(() => (this.sse === "no" ? this.poll() : this.start()), ms);
        }
        return;
      }
      if (r.status === 401) {
        saveToken(null);
        localStorage.removeItem(KEY_FIRST);
        notice("Your place in line is no longer valid. Please join again.", "bad");
        show("join");
      } else if (r.status === 429) {
        this.schedule(retryAfterMs(r, 2000));
      } else {
        this.lost();
      }
    },
  };

  function setNote(text) {
    $("wait-note").textContent = text;
  }

  function onStatus(dto) {
    switch (dto.status) {
      case "waiting":
        renderWait(dto);
        if (S.view !== "wait") show("wait");
        break;
      case "sold_out":
        show("soldout");
        break;
      case "active":
        S.activeUntil = Date.parse(dto.active_until);
        if (S.view !== "shop") enterShop();
        break;
      case "expired":
        ended("Your place lapsed",
          "You were let in but did not come back in time, so your place went to the next person. You can join the line again.");
        break;
      case "done": {
        const receipt = localStorage.getItem(KEY_RECEIPT);
        if (receipt) showReceipt(JSON.parse(receipt));
        else ended("Your session ended", "Your session ended with a payment. Join the line again to book more.");
        break;
      }
      default:
        break;
    }
  }

  function renderWait(dto) {
    const pos = dto.position || 1;
    let first = null;
    try {
      first = JSON.parse(localStorage.getItem(KEY_FIRST) || "null");
    } catch (e) {
      first = null;
    }
    if (!first || first.seq !== dto.seq || first.pos < pos) {
      first = { seq: dto.seq, pos };
      localStorage.setItem(KEY_FIRST, JSON.stringify(first));
    }
    $("position").textContent = amount(pos);
    $("ahead").textContent = amount(pos - 1);
    $("eta").textContent = dto.paused ? "paused" : dto.eta_secs == null ? "estimating…" : about(dto.eta_secs);
    const done = first.pos > 0 ? ((first.pos - pos) / first.pos) * 100 : 0;
    $("progress").value = Math.max(2, Math.min(100, done));
    $("paused").hidden = !dto.paused;
  }

  // --- the shop ---------------------------------------------------------------------

  // Handles the answers every gated call may get. Returns true when it did.
  function gateTrouble(r) {
    const c = code(r);
    if (c === "not_admitted") {
      notice("It is not your turn yet.");
      show("wait");
      watcher.start();
      return true;
    }
    if (c === "token_ended" || c === "token_expired" || c === "unknown_token" || c === "invalid_token" || c === "missing_token") {
      ended("Your session ended",
        c === "token_expired"
          ? "Your session ran out of time. Join the line again to continue."
          : "Your session ended. Join the line again to continue.");
      return true;
    }
    if (c === "rate_limited") {
      notice("Too many requests: please wait a moment.", "bad");
      return true;
    }
    if (r.status === 0) {
      notice("The server cannot be reached. Check your connection; nothing was lost.", "bad");
      return true;
    }
    return false;
  }

  async function enterShop() {
    show("shop");
    notice("");
    startShopTimers();
    const r = await api("GET", "/v1/concerts", { auth: S.token });
    if (!r.ok) {
      if (!gateTrouble(r)) notice("Could not load the concerts: " + message(r), "bad");
      return;
    }
    S.concerts = r.body || [];
    const sel = $("concert");
    sel.replaceChildren(...S.concerts.map((c) => el("option", { value: c.id, text: c.name })));
    if (!S.concerts.length) {
      notice("Nothing is on sale yet.");
      return;
    }
    S.concertId = S.concerts[0].id;
    sel.value = String(S.concertId);
    await learnPayment();
    await Promise.all([loadDates(), loadHolds(), loadBalance()]);
    // The first gated call started the session: learn when it ends.
    await refreshSession();
  }

  // Asks when the session ends (before the first gated call the status tells the
  // show-up deadline, after it the session's end).
  async function refreshSession() {
    const r = await api("GET", "/v1/queue/status", { auth: S.token });
    if (!r.ok || !r.body) return;
    if (r.body.status === "active") {
      S.activeUntil = Date.parse(r.body.active_until);
      tick();
    } else {
      onStatus(r.body);
    }
  }

  async function loadDates() {
    const r = await api("GET", `/v1/concerts/${S.concertId}/dates`, { auth: S.token });
    if (!r.ok) {
      if (!gateTrouble(r)) notice("Could not load the dates: " + message(r), "bad");
      return;
    }
    S.dates = r.body || [];
    const concert = S.concerts.find((c) => c.id === S.concertId);
    for (const d of S.dates) S.names.set(d.schedule_id, `${concert ? concert.name : "Concert"}, ${d.date}`);
    const sel = $("date");
    sel.replaceChildren(
      ...S.dates.map((d) =>
        el("option", { value: d.date, text: dateLabel(d, d.seats_free) }),
      ),
    );
    if (!S.dates.length) {
      S.date = null;
      $("seats").replaceChildren();
      notice("No bookable date for this concert.");
      return;
    }
    if (!S.dates.some((d) => d.date === S.date)) S.date = S.dates[0].date;
    sel.value = S.date;
    renderHolds();
    await loadSeats();
  }

  async function loadSeats() {
    if (!S.date || S.view !== "shop") return;
    const concert = S.concertId;
    const date = S.date;
    const r = await api("GET", `/v1/concerts/${concert}/dates/${date}/seats`, { auth: S.token });
    if (concert !== S.concertId || date !== S.date) return;
    if (!r.ok) {
      if (code(r) === "sold_out") {
        notice("Sold out: every seat is sold or held right now. A seat comes back if a hold lapses.", "warn");
        return;
      }
      if (!gateTrouble(r)) notice("Could not load the seats: " + message(r), "bad");
      return;
    }
    S.seats = r.body.seats || [];
    renderSeats(r.body.schedule_id);
  }

  function dateLabel(d, free) {
    return `${d.date} ${d.starts_at.slice(11, 16)} UTC (${free} free)`;
  }

  function myHoldOn(scheduleId, seat) {
    for (const h of S.holds.values()) {
      if (h.scheduleId === scheduleId && h.seat === seat && h.state === "held") return h;
    }
    return null;
  }

  function renderSeats(scheduleId) {
    const box = $("seats");
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.seat : null;
    let free = 0;
    const buttons = S.seats.map((s) => {
      const mine = s.state === "held" && myHoldOn(scheduleId, s.seat);
      const state = mine ? "mine" : s.state;
      if (state === "free") free += 1;
      const words = { free: "free", held: "held by someone", sold: "sold", mine: "held by you" }[state];
      const label = `Seat ${s.seat}, ${words}, price ${amount(s.price)}` + (state === "free" ? ": press to hold" : "");
      return el(
        "button",
        {
          type: "button",
          class: "seat " + state,
          "data-seat": s.seat,
          "data-state": state,
          "aria-label": label,
          title: label,
          disabled: state !== "free",
          onclick: () => hold(s.seat),
        },
        el("span", { class: "no", text: s.seat }),
        el("span", { class: "price", text: amount(s.price) }),
      );
    });
    box.replaceChildren(...buttons);
    box.dataset.scheduleId = scheduleId;
    $("seats-free").textContent = `(${free} free)`;
    const d = S.dates.find((x) => x.schedule_id === scheduleId);
    const opt = d && [...$("date").options].find((o) => o.value === d.date);
    if (opt) opt.textContent = dateLabel(d, free);
    if (focused) {
      const again = box.querySelector(`[data-seat="${focused}"]`);
      if (again && !again.disabled) again.focus();
    }
  }

  async function hold(seat) {
    if (S.busy) return;
    S.busy = true;
    const date = S.date;
    const concertId = S.concertId;
    const r = await api("POST", "/v1/reservations", {
      auth: S.token,
      body: { concert_id: concertId, date, seat },
    });
    S.busy = false;
    if (r.status === 201 && r.body) {
      const h = addHold(r.body, true);
      notice(`Seat ${seat} is yours until ${new Date(h.expiresAt).toLocaleTimeString()}. Pay before the countdown ends.`, "ok");
      renderHolds();
      await loadSeats();
      // The pressed seat is no longer a button one can press: keyboard users go
      // on from their new hold.
      const picked = $("pick-" + h.id);
      if (picked && (!document.activeElement || document.activeElement === document.body)) picked.focus();
      return;
    }
    const c = code(r);
    if (c === "seat_taken") {
      notice(`Seat ${seat} was just taken by someone else. Please pick another seat.`, "bad");
    } else if (c === "hold_limit") {
      notice(`You already hold as many seats as allowed. Pay for them or cancel one first. (${message(r)})`, "bad");
    } else if (c === "sold_out") {
      notice("Sold out: every seat is sold or held right now.", "warn");
    } else if (c === "date_closed") {
      notice("This date is no longer on sale.", "bad");
    } else if (!gateTrouble(r)) {
      notice(`Could not hold seat ${seat}: ${message(r) || "error " + r.status}`, "bad");
    }
    await loadSeats();
  }

  function addHold(dto, selected) {
    if (selected && !S.multiPay) for (const other of S.holds.values()) other.selected = false;
    const expires = Date.parse(dto.expires_at);
    const h = {
      id: dto.reservation_id,
      seat: dto.seat,
      price: dto.price,
      scheduleId: dto.schedule_id,
      expiresAt: expires,
      state: dto.state,
      selected,
    };
    S.holds.set(h.id, h);
    return h;
  }

  async function loadHolds() {
    const r = await api("GET", "/v1/reservations", { auth: S.token });
    if (!r.ok) return;
    for (const dto of r.body || []) {
      if (dto.state === "held" && Date.parse(dto.expires_at) > serverNow() && !S.holds.has(dto.reservation_id)) {
        addHold(dto, S.multiPay || selectedHolds().length === 0);
      }
    }
    renderHolds();
  }

  // Whether this server pays several holds in one payment (`reservation_ids` in
  // its OpenAPI document's payment request); else one hold is selected at a time.
  async function learnPayment() {
    const r = await api("GET", "/openapi.json");
    const schemas = r.ok && r.body && r.body.components && r.body.components.schemas;
    const pay = schemas && schemas.PayRequest;
    const names = (s) => !!(s && s.properties && s.properties.reservation_ids);
    S.multiPay = !!(pay && (names(pay) || (Array.isArray(pay.oneOf) && pay.oneOf.some(names))));
  }

  async function cancel(id) {
    const h = S.holds.get(id);
    if (!h) return;
    const r = await api("DELETE", `/v1/reservations/${encodeURIComponent(id)}`, { auth: S.token });
    if (r.ok || code(r) === "reservation_cancelled") {
      S.holds.delete(id);
      notice(`You let seat ${h.seat} go.`);
    } else if (code(r) === "hold_expired") {
      h.state = "expired";
      notice(`Your hold on seat ${h.seat} had already expired.`, "warn");
    } else if (!gateTrouble(r)) {
      notice(`Could not cancel: ${message(r)}`, "bad");
    }
    renderHolds();
    await loadSeats();
  }

  function renderHolds() {
    const list = $("holds");
    const items = [];
    for (const h of S.holds.values()) {
      if (h.state === "paid") continue;
      const what = `${S.names.get(h.scheduleId) || "date " + h.scheduleId}, ${amount(h.price)}`;
      const live = h.state === "held";
      const box = el("input", {
        type: "checkbox",
        id: "pick-" + h.id,
        checked: live && h.selected,
        disabled: !live,
        onchange: (e) => {
          h.selected = e.target.checked;
          if (h.selected && !S.multiPay) {
            for (const other of S.holds.values()) if (other !== h) other.selected = false;
            renderHolds();
            const again = $("pick-" + h.id);
            if (again) again.focus();
            return;
          }
          renderPay();
        },
      });
      items.push(
        el(
          "li",
          { class: live ? "held" : "expired", "data-reservation": h.id, "data-seat": h.seat },
          el("label", { for: "pick-" + h.id }, box, live ? `Pay for seat ${h.seat}, ${what}` : `Seat ${h.seat}, ${what}`),
          el("span", { class: "countdown", "data-expires": h.expiresAt, "aria-label": live ? "time left" : "expired" },
            live ? clock(h.expiresAt - serverNow()) : "expired"),
          live
            ? el("button", { type: "button", "aria-label": `Cancel the hold on seat ${h.seat}`, text: "Cancel", onclick: () => cancel(h.id) })
            : null,
        ),
      );
    }
    list.replaceChildren(...items);
    $("no-holds").hidden = items.length > 0;
    const live = [...S.holds.values()].filter((h) => h.state === "held").length;
    $("one-per-payment").hidden = S.multiPay || live < 2;
    renderPay();
  }

  function selectedHolds() {
    return [...S.holds.values()].filter((h) => h.state === "held" && h.selected);
  }

  function renderPay() {
    const sel = selectedHolds();
    const total = sel.reduce((a, h) => a + h.price, 0);
    const b = $("pay");
    b.disabled = sel.length === 0;
    b.textContent = sel.length === 0
      ? "Pay (select a hold)"
      : `Pay ${amount(total)} for ${sel.length === 1 ? "seat " + sel[0].seat : sel.length + " seats"}`;
  }

  // Once a second: the countdowns of the holds and of the session.
  function tick() {
    const now = serverNow();
    const lapsed = [];
    for (const h of S.holds.values()) {
      if (h.state === "held" && h.expiresAt <= now) {
        h.state = "expired";
        h.selected = false;
        lapsed.push(h);
      }
    }
    for (const span of document.querySelectorAll("#holds .countdown[data-expires]")) {
      const li = span.closest("li");
      if (li && li.classList.contains("held")) span.textContent = clock(Number(span.dataset.expires) - now);
    }
    if (lapsed.length) {
      const seats = lapsed.map((h) => h.seat).join(", ");
      notice(`Your hold on seat ${seats} expired: the seat is free again for anyone.`, "bad");
      renderHolds();
      // Lapsed holds are free on the server at once (lazy expiry).
      setTimeout(loadSeats, 300);
    }
    if (S.activeUntil) {
      const left = S.activeUntil - now;
      $("session-left").textContent = clock(left);
      if (left <= 0 && !S.checkingSession) {
        S.checkingSession = true;
        refreshSession().then(() => {
          S.checkingSession = false;
          if (S.view === "shop" && S.activeUntil <= serverNow()) {
            ended("Your session ended", "Your time to book ran out. Join the line again to continue.");
          }
        });
      }
    }
  }

  function startShopTimers() {
    stopShopTimers();
    tick();
    S.timers.tick = setInterval(tick, 1000);
    // The seat map changes as others hold and pay: look again every 5 s.
    S.timers.seats = setInterval(loadSeats, 5000);
  }

  function stopShopTimers() {
    clearInterval(S.timers.tick);
    clearInterval(S.timers.seats);
    S.timers.tick = S.timers.seats = null;
  }

  async function loadBalance() {
    const r = await api("GET", `/v1/users/${S.user}/balance`, { auth: S.token });
    if (r.ok && r.body) {
      S.balance = r.body.balance;
      $("balance").textContent = amount(S.balance);
    }
  }

  async function topUp(e) {
    e.preventDefault();
    const input = $("topup");
    const n = Number(input.value);
    if (!Number.isSafeInteger(n) || n < 1) {
      notice("Enter a whole amount of at least 1.", "bad");
      input.focus();
      return;
    }
    $("topup-button").disabled = true;
    const r = await api("POST", `/v1/users/${S.user}/charges`, {
      auth: S.token,
      body: { amount: n },
      headers: { "Idempotency-Key": S.topupKey },
    });
    $("topup-button").disabled = false;
    if (r.ok && r.body) {
      S.topupKey = uuid();
      S.balance = r.body.balance_after;
      $("balance").textContent = amount(S.balance);
      notice(`Added ${amount(n)}: your balance is ${amount(S.balance)}.`, "ok");
      return;
    }
    const c = code(r);
    if (c === "invalid_amount" || c === "balance_limit") notice(message(r), "bad");
    else if (!gateTrouble(r)) notice("Could not top up: " + (message(r) || "error " + r.status), "bad");
  }

  async function pay() {
    const sel = selectedHolds();
    if (!sel.length || S.busy) return;
    S.busy = true;
    $("pay").disabled = true;
    const ids = sel.map((h) => h.id);
    let body;
    let key;
    if (ids.length === 1) {
      body = { reservation_id: ids[0] };
      key = "pay-" + ids[0];
    } else {
      body = { reservation_ids: ids };
      const k = ids.join(",");
      if (!S.payKeys.has(k)) S.payKeys.set(k, "pay-" + uuid());
      key = S.payKeys.get(k);
    }
    const r = await api("POST", "/v1/payments", { auth: S.token, body, headers: { "Idempotency-Key": key } });
    S.busy = false;
    renderPay();
    if (r.ok && r.body) {
      const paid = Array.isArray(r.body) ? r.body : Array.isArray(r.body.payments) ? r.body.payments : [r.body];
      // Every seat of each payment (`seats`; a server without it names one).
      const seats = paid.flatMap((p) =>
        (Array.isArray(p.seats) && p.seats.length
          ? p.seats
          : [{ reservation_id: p.reservation_id, schedule_id: p.schedule_id, seat: p.seat, price: p.amount }]
        ).map((s) => ({ ...s, payment: p.payment_id })),
      );
      for (const s of seats) {
        const h = S.holds.get(s.reservation_id);
        if (h) h.state = "paid";
      }
      const b = await api("GET", `/v1/users/${S.user}/balance`, { auth: S.token });
      const receipt = {
        rows: seats.map((s) => ({
          what: S.names.get(s.schedule_id) || "date " + s.schedule_id,
          seat: s.seat,
          amount: s.price,
          payment: s.payment,
        })),
        balance: b.ok && b.body ? b.body.balance : null,
      };
      localStorage.setItem(KEY_RECEIPT, JSON.stringify(receipt));
      notice("");
      showReceipt(receipt);
      return;
    }
    const c = code(r);
    if (c === "insufficient_balance") {
      const total = sel.reduce((a, h) => a + h.price, 0);
      const short = S.balance == null ? null : total - S.balance;
      notice(
        `Not enough balance: ${sel.length === 1 ? "this seat costs" : "these seats cost"} ${amount(total)}` +
          (S.balance == null ? "." : ` and your balance is ${amount(S.balance)}. Top up at least ${amount(Math.max(1, short))}.`),
        "bad",
      );
      await loadBalance();
    } else if (c === "hold_expired") {
      for (const h of sel) if (h.expiresAt <= serverNow() + 1000) h.state = "expired";
      notice(`Your hold expired before the payment: ${sel.map((h) => "seat " + h.seat).join(", ")} is free again.`, "bad");
      renderHolds();
      await loadSeats();
    } else if (r.status === 400 && ids.length > 1) {
      notice("This server takes one hold per payment: keep one hold selected and pay for it.", "bad");
    } else if (c === "already_paid") {
      notice("That hold is already paid.", "warn");
    } else if (c === "reservation_cancelled") {
      for (const h of sel) S.holds.delete(h.id);
      notice("That hold was cancelled.", "warn");
      renderHolds();
    } else if (!gateTrouble(r)) {
      notice("The payment failed: " + (message(r) || "error " + r.status), "bad");
    }
  }

  function showReceipt(receipt) {
    watcher.stop();
    $("receipt-rows").replaceChildren(
      ...receipt.rows.map((row) =>
        el(
          "tr",
          {},
          el("td", { text: row.what }),
          el("td", { class: "num", text: row.seat }),
          el("td", { class: "num", text: amount(row.amount) }),
          el("td", {}, el("code", { text: String(row.payment).slice(0, 8) })),
        ),
      ),
    );
    $("receipt-balance").textContent = receipt.balance == null ? "–" : amount(receipt.balance);
    show("receipt");
  }

  function again() {
    saveToken(null);
    localStorage.removeItem(KEY_FIRST);
    localStorage.removeItem(KEY_RECEIPT);
    S.holds.clear();
    notice("");
    join();
  }

  // --- start ------------------------------------------------------------------------

  function init() {
    S.user = localStorage.getItem(KEY_USER);
    if (!S.user || !/^[0-9a-f-]{36}$/i.test(S.user)) {
      S.user = uuid();
      localStorage.setItem(KEY_USER, S.user);
    }
    $("who").textContent = "you: " + S.user.slice(0, 8);
    $("who").title = S.user;
    $("join").addEventListener("click", join);
    $("rejoin").addEventListener("click", again);
    $("again").addEventListener("click", again);
    $("topup-form").addEventListener("submit", topUp);
    $("pay").addEventListener("click", pay);
    $("concert").addEventListener("change", async (e) => {
      S.concertId = Number(e.target.value);
      S.date = null;
      await loadDates();
    });
    $("date").addEventListener("change", async (e) => {
      S.date = e.target.value;
      await loadSeats();
    });
    S.token = localStorage.getItem(KEY_TOKEN);
    if (S.token) {
      show("loading");
      watcher.start();
    } else {
      show("join");
    }
  }

  init();
})();

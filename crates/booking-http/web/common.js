// What the user page and the operator page share: calling the JSON API, building
// elements without innerHTML, and formatting numbers and durations.
"use strict";

const Booking = (() => {
  // Server time minus local time, learned from the Date header of answers (whole
  // seconds); used only when the two clocks differ by more than 1.5 s.
  let skewMs = 0;

  function noteServerDate(res) {
    const d = res.headers.get("date");
    if (!d) return;
    const server = Date.parse(d);
    if (Number.isNaN(server)) return;
    const diff = server - Date.now();
    skewMs = Math.abs(diff) > 1500 ? diff : 0;
  }

  // Now, on the server's clock (as far as we know it).
  function serverNow() {
    return Date.now() + skewMs;
  }

  // One API call. Resolves to {status, ok, body, headers}; a network failure
  // resolves to {status: 0, ok: false, body: null}. Never throws.
  async function api(method, path, { auth, body, headers } = {}) {
    const h = Object.assign({ Accept: "application/json" }, headers || {});
    if (auth) h.Authorization = "Bearer " + auth;
    if (body !== undefined) h["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      return { status: 0, ok: false, body: null, headers: new Headers() };
    }
    noteServerDate(res);
    let parsed = null;
    const text = await res.text().catch(() => "");
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        parsed = null;
      }
    }
    return { status: res.status, ok: res.ok, body: parsed, headers: res.headers };
  }

  // The error code of an error answer (`{"error": {"code", "message"}}`).
  function code(r) {
    return (r.body && r.body.error && r.body.error.code) || (r.status === 0 ? "network" : "http_" + r.status);
  }

  function message(r) {
    return (r.body && r.body.error && r.body.error.message) || "";
  }

  // Seconds of `Retry-After`, or `fallback`.
  function retryAfterMs(r, fallback) {
    const v = r.headers && r.headers.get("retry-after");
    const n = v ? Number.parseInt(v, 10) : NaN;
    return Number.isFinite(n) && n >= 0 ? n * 1000 : fallback;
  }

  // el("li", {class: "x", text: "..."}, child, ...): an element, safely.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v === true) e.setAttribute(k, "");
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const groups = new Intl.NumberFormat("en-US");

  // Amounts are integers in the currency's smallest unit.
  function amount(n) {
    return groups.format(n);
  }

  // "4:07", "1:02:03", "0:00": a countdown.
  function clock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = String(s % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }

  // "about 40 s", "about 3 min", "about 2 h".
  function about(secs) {
    if (secs < 60) return `about ${Math.max(1, Math.round(secs))} s`;
    if (secs < 3600) return `about ${Math.round(secs / 60)} min`;
    return `about ${(secs / 3600).toFixed(1)} h`;
  }

  // A random UUID (v4), also where crypto.randomUUID is missing (plain HTTP on
  // another host is not a secure context).
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function $(id) {
    return document.getElementById(id);
  }

  return { api, code, message, retryAfterMs, el, amount, clock, about, uuid, $, serverNow };
})();

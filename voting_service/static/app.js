/* voting-service pages: filters, voting (credential, proof of work, retries), live counts.
   No dependencies; served by the service itself. */
(function () {
  "use strict";
  var cfgEl = document.getElementById("vs-config");
  if (!cfgEl) return;
  var C = JSON.parse(cfgEl.textContent), T = C.t;
  var api = "/api/v1/campaigns/" + encodeURIComponent(C.cid);
  var $ = function (s, r) { return (r || document).querySelector(s); };
  var $$ = function (s, r) { return Array.prototype.slice.call((r || document).querySelectorAll(s)); };
  var fmt = function (s, o) { return s.replace(/\{(\w+)\}/g, function (_, k) { return o[k] == null ? "" : o[k]; }); };
  /* "1 vote", not "1 votes": a key's _one form where the language has one. */
  var fmtN = function (key, o) { return fmt(o.n === 1 && T[key + "_one"] ? T[key + "_one"] : T[key], o); };
  var sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };
  var num = function (n) { return Number(n).toLocaleString(C.locale); };

  /* Storage that still works where the browser blocks it (third-party iframes). */
  var mem = {};
  function sget(k) { try { var v = localStorage.getItem(k); if (v != null) return v; } catch (e) { /* blocked */ } return mem[k] == null ? null : mem[k]; }
  function sset(k, v) {
    if (v == null) delete mem[k]; else mem[k] = v;
    try { if (v == null) localStorage.removeItem(k); else localStorage.setItem(k, v); } catch (e) { /* blocked */ }
  }

  /* ---------- feedback ---------- */
  var toast = $("#vs-toast"), toastTimer;
  function say(msg, kind, card) {
    if (C.embed && card) {
      var m = $(".msg", card);
      if (!m) { m = document.createElement("p"); m.setAttribute("role", "status"); ($(".bd", card) || card).appendChild(m); }
      m.className = "msg " + (kind || "");
      m.textContent = msg;
      return;
    }
    toast.textContent = msg;
    toast.className = "toast show " + (kind || "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { toast.className = "toast"; }, 8000);
  }

  /* ---------- the day in the campaign's time zone ---------- */
  function dayOf(d) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: C.tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  }
  function clock(d) {
    return new Intl.DateTimeFormat(C.locale, { timeZone: C.tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(d);
  }
  function resetText(seconds) {
    var at = new Date(Math.round((Date.now() + seconds * 1000) / 60000) * 60000);
    var hm = clock(at);
    return fmt(T.quota, { when: dayOf(at) === dayOf(new Date()) ? hm : fmt(T.tomorrow, { t: hm }), tz: C.tzName });
  }
  var votedKey = "vs:v:" + C.cid;
  function votedToday() {
    try { var v = JSON.parse(sget(votedKey) || "{}"); return v.d === dayOf(new Date()) ? v.ids : []; } catch (e) { return []; }
  }
  function rememberVoted(id) {
    var ids = votedToday();
    if (ids.indexOf(id) < 0) ids.push(id);
    sset(votedKey, JSON.stringify({ d: dayOf(new Date()), ids: ids }));
  }

  /* ---------- buttons and counts ---------- */
  /* The vote ids this device cast, so the voter can find each in the published ledger. */
  function keepVoteId(vid, id) {
    var key = "vs_votes_" + C.cid, list;
    try { list = JSON.parse(sget(key) || "[]"); } catch (e) { list = []; }
    if (!Array.isArray(list)) list = [];
    /* h: the size of the log's latest signed head when it was cast (the receipt) */
    list.push({ v: vid, c: id, d: dayOf(new Date()), h: headSize });
    sset(key, JSON.stringify(list.slice(-300)));
    if (typeof showReceipts === "function") showReceipts();
  }
  var headSize = 0;
  function cardOf(el) { return el.closest("[data-id]"); }
  function who(card) { var n = $(".nm", card); return n ? n.textContent.replace(/\s+/g, " ").trim() : ""; }
  function setButton(btn, state) {
    var card = cardOf(btn);
    btn.removeAttribute("aria-busy");
    btn.classList.remove("done");
    if (state === "busy") { btn.setAttribute("aria-busy", "true"); btn.textContent = T.voting; }
    else if (state === "voted") { btn.disabled = true; btn.classList.add("done"); btn.textContent = T.voted; }
    else if (state === "closed") { btn.disabled = true; btn.textContent = T.vote; }
    else if (state === "quota") { btn.disabled = true; btn.classList.add("done"); btn.textContent = T.quota_button; }
    else { btn.disabled = false; btn.textContent = T.vote; }
    btn.setAttribute("aria-label", btn.textContent + "：" + who(card));
  }
  function setCount(card, votes) {
    var b = $(".cnt b", card);
    if (!b || votes == null) return;
    var prev = +card.getAttribute("data-v") || 0;
    if (votes < prev) return;
    card.setAttribute("data-v", votes);
    b.textContent = num(votes);
    var u = $(".cnt .u", card);
    if (u) u.textContent = votes === 1 && T.votes_unit_one ? T.votes_unit_one : T.votes_unit;
  }
  function bumpTotal(by) {
    var t = $("#vs-total");
    if (t) t.textContent = num((+t.textContent.replace(/\D/g, "") || 0) + by);
  }
  var closedText = { paused: T.paused, closed: T.ended, upcoming: T.upcoming, draft: T.closed };
  function closeAll(status) {
    var b = $("#vs-state");
    if (b) { b.textContent = closedText[status] || T.closed; b.hidden = false; }
    $$("button[data-vote]").forEach(function (x) { if (!x.classList.contains("done")) setButton(x, "closed"); });
  }

  /* ---------- HTTP ---------- */
  async function req(method, url, body, headers) {
    var h = { Accept: "application/json" };
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    if (body !== undefined) h["Content-Type"] = "application/json";
    var r = await fetch(url, { method: method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", cache: "no-store" });
    var data = {};
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    var limit = /;t=(\d+)/.exec(r.headers.get("RateLimit") || "");
    return { status: r.status, body: data || {}, wait: +(r.headers.get("Retry-After") || 0), reset: limit ? +limit[1] : 0 };
  }
  function online() {
    return new Promise(function (resolve) {
      if (navigator.onLine !== false) return resolve();
      window.addEventListener("online", function h() { window.removeEventListener("online", h); resolve(); });
    });
  }
  /* Same request (same vote_id) again on network errors and 502-504; waits while offline. */
  async function send(method, url, body, headers, card) {
    for (var i = 0; ; i++) {
      if (navigator.onLine === false) { say(T.offline, "warn", card); await online(); }
      try {
        var r = await req(method, url, body, headers);
        if (r.status < 502 || r.status > 504 || i >= 4) return r;
      } catch (e) {
        if (navigator.onLine === false) continue;
        if (i >= 4) throw { net: true };
      }
      await sleep(400 * Math.pow(2, i));
    }
  }

  /* ---------- credential ---------- */
  var tokenKey = "vs:t:" + C.cid, partnerToken = null;
  function authHeaders(token) {
    if (partnerToken) return { Authorization: "Bearer " + partnerToken };
    return token ? { "X-Voter-Token": token } : {};
  }
  /* Inside WeChat the voter cookie set by the WeChat sign-in is the credential: the first
     try goes with it, a 401 sends the page through WeChat's silent authorisation. */
  var inWechat = !!C.wechat && /MicroMessenger/i.test(navigator.userAgent), wxTried = false;
  async function credential(card) {
    if (partnerToken) return "";
    if (inWechat) {
      if (!wxTried) { wxTried = true; return ""; }
      location.href = C.wechat;
      throw { quiet: true };
    }
    var token = sget(tokenKey);
    if (token) return token;
    if (C.identity.indexOf("anonymous") >= 0) {
      token = await mintToken(card);
    } else if (C.identity.indexOf("sms") >= 0) {
      token = await smsFlow(card);
    } else {
      throw { msg: C.identity.indexOf("wechat") >= 0 ? T.wechat_only : T.login };
    }
    sset(tokenKey, token);
    return token;
  }

  /* A new anonymous token costs the address what a vote costs: when the campaign asks for a
     proof of work, solve the address's minting challenge first (once more if it was spent or
     the network got busier meanwhile). */
  async function mintToken(card) {
    var withProof = C.challenge !== "off", r;
    for (var i = 0; i < 2; i++) {
      var body = withProof ? { proof: await proofFrom(api + "/challenge?for=voter", {}, card) } : undefined;
      r = await send("POST", api + "/voter", body, {}, card);
      if (r.status === 201 && r.body.token) return r.body.token;
      if (r.status !== 403 || r.body.code !== "challenge_failed") break;
      withProof = true;
    }
    if (r.status === 429) throw { msg: fmt(T.voter_rate, { s: r.wait || 60 }) };
    throw r;
  }

  /* What the citizen typed, in one form: full-width digits (a Chinese IME) become ASCII. */
  function typed(el) {
    var v = el.value.normalize ? el.value.normalize("NFKC") : el.value;
    return v.replace(/[\s-]/g, "");
  }

  /* SMS one-time code: resolves with a voter token, rejects when cancelled. */
  function smsFlow(card) {
    var sheet = $("#vs-sms"), form = $("#vs-sms-form"), phone = $("#vs-phone"), code = $("#vs-code");
    var sendBtn = $("#vs-send"), err = $("#vs-sms-err"), timer;
    if (C.embed && card) ($(".bd", card) || card).appendChild(sheet);
    sheet.hidden = false;
    err.textContent = "";
    err.className = "err";
    sendBtn.disabled = false;
    sendBtn.textContent = T.send_code;
    phone.focus();
    return new Promise(function (resolve, reject) {
      function close(fn, v) {
        clearInterval(timer);
        sheet.hidden = true;
        form.onsubmit = sendBtn.onclick = $("#vs-cancel").onclick = sheet.onkeydown = null;
        var back = card && $("button[data-vote]", card);
        if (back) back.focus();
        fn(v);
      }
      function fail(text) { err.className = "err"; err.textContent = text; }
      function valid() { var ok = /^(\+?86)?1[3-9][0-9]{9}$/.test(typed(phone)); if (!ok) { fail(T.bad_phone); phone.focus(); } return ok; }
      sendBtn.onclick = async function () {
        if (!valid()) return;
        sendBtn.disabled = true;
        var r = await req("POST", "/api/v1/auth/sms/start", { phone: typed(phone), campaign_id: C.cid }).catch(function () { return { status: 0, body: {} }; });
        if (r.status >= 300) { sendBtn.disabled = false; fail(r.status === 429 ? fmt(T.sms_rate, { s: r.wait || 60 }) : r.status === 400 ? T.bad_phone : T.generic); return; }
        err.textContent = T.sms_sent;
        err.className = "err ok";
        code.focus();
        var left = 60;
        timer = setInterval(function () {
          left -= 1;
          sendBtn.textContent = left > 0 ? fmt(T.resend, { s: left }) : T.send_code;
          if (left <= 0) { clearInterval(timer); sendBtn.disabled = false; }
        }, 1000);
      };
      form.onsubmit = async function (e) {
        e.preventDefault();
        if (!valid()) return;
        var r = await req("POST", "/api/v1/auth/sms/verify", { phone: typed(phone), code: typed(code), campaign_id: C.cid }).catch(function () { return { status: 0, body: {} }; });
        if (r.status < 300 && r.body.token) close(resolve, r.body.token);
        else fail(r.status === 0 ? T.network : r.status === 429 ? fmt(T.code_rate, { s: r.wait || 60 }) : T.bad_code);
      };
      $("#vs-cancel").onclick = function () { close(reject, { quiet: true }); };
      sheet.onkeydown = function (e) { if (e.key === "Escape") close(reject, { quiet: true }); };
    });
  }

  /* ---------- proof of work (ALTCHA), solved in a Web Worker ---------- */
  var worker = null, jobs = 0;
  function solve(ch, card) {
    return new Promise(function (resolve, reject) {
      if (!window.Worker || !window.crypto || !crypto.subtle) return reject({ msg: T.insecure });
      worker = worker || new Worker(C.pow);
      var id = ++jobs, slow = false;
      var hint = setTimeout(function () { slow = true; say(T.pow, "", card); }, 1000);
      worker.onmessage = function (e) {
        var d = e.data;
        if (d.id !== id) return;
        if (d.progress != null) { if (slow) say(fmt(T.pow_pct, { p: Math.min(99, Math.round(d.progress * 100)) }), "", card); return; }
        clearTimeout(hint);
        if (d.number == null) reject({ msg: T.pow_fail }); else resolve(d.number);
      };
      worker.onerror = function () { clearTimeout(hint); worker = null; reject({ msg: T.pow_fail }); };
      worker.postMessage({ id: id, algorithm: ch.algorithm, challenge: ch.challenge, salt: ch.salt, maxnumber: ch.maxnumber });
    });
  }
  async function proof(token, card) {
    return proofFrom(api + "/challenge", authHeaders(token), card);
  }
  async function proofFrom(url, headers, card) {
    var r = await send("GET", url, undefined, headers, card);
    if (r.status !== 200) throw r;
    var ch = r.body, n = await solve(ch, card);
    return btoa(JSON.stringify({ algorithm: ch.algorithm, challenge: ch.challenge, number: n, salt: ch.salt, signature: ch.signature }));
  }

  /* ---------- voting ---------- */
  var pending = {}, quotaUntil = 0, quotaText = "", needProof = C.challenge !== "off", queue = Promise.resolve();
  /* The day's votes used up: every button says so, until the reset (kept across reloads). */
  var quotaKey = "vs:q:" + C.cid, quotaTimer;
  function quotaButtons() {
    $$("button[data-vote]").forEach(function (x) {
      if (quotaUntil > Date.now()) { if (!x.disabled) setButton(x, "quota"); }
      else if (x.textContent === T.quota_button) setButton(x, votedToday().indexOf(x.getAttribute("data-vote")) >= 0 ? "voted" : "");
    });
  }
  function quotaUsed(seconds) {
    if (!(seconds > 0)) return;
    quotaUntil = Date.now() + seconds * 1000;
    quotaText = resetText(seconds);
    sset(quotaKey, String(quotaUntil));
    quotaButtons();
    clearTimeout(quotaTimer);
    quotaTimer = setTimeout(quotaButtons, Math.min(seconds * 1000 + 500, 2147483000));
  }
  function newId() {
    var a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }
  async function cast(btn) {
    var id = btn.getAttribute("data-vote"), card = cardOf(btn);
    if (quotaUntil > Date.now()) return say(quotaText, "warn", card);
    setButton(btn, "busy");
    var vid = pending[id] || (pending[id] = newId()), state = "";
    try {
      var token = await credential(card), renewed = false, reproved = false;
      var body = { candidate_id: id, vote_id: vid };
      if (C.channel) body.channel = C.channel;
      var r;
      for (;;) {
        if (needProof && !body.proof) body.proof = await proof(token, card);
        r = await send("POST", api + "/votes", body, authHeaders(token), card);
        if (r.status === 401 && !renewed && !partnerToken) {
          renewed = true; sset(tokenKey, null); delete body.proof;
          token = await credential(card);
          continue;
        }
        if (r.status === 403 && r.body.code === "challenge_failed" && !reproved && C.challenge !== "off") {
          reproved = true; needProof = true; delete body.proof;
          continue;
        }
        break;
      }
      state = outcome(r, btn, id, card);
    } catch (e) {
      if (e && e.quiet) state = "";
      else if (e && e.msg) say(e.msg, "warn", card);
      else if (e && e.net) say(T.network, "warn", card);
      else if (e && e.status) state = outcome(e, btn, id, card);
      else say(T.generic, "warn", card);
    }
    setButton(btn, state);
  }
  /* Says what happened; returns the button's new state. */
  function outcome(r, btn, id, card) {
    var code = r.body.code;
    if (r.status === 200) {
      delete pending[id];
      rememberVoted(id);
      keepVoteId(r.body.vote_id, id);
      if (r.body.candidate_votes != null) setCount(card, r.body.candidate_votes);
      else setCount(card, (+card.getAttribute("data-v") || 0) + 1);
      bumpTotal(1);
      var left = r.body.votes_left_today;
      say(left > 0 ? fmtN("ok", { n: left }) : T.ok_last, "ok", card);
      if (left === 0 && r.reset) { setButton(btn, "voted"); quotaUsed(r.reset); }
      return "voted";
    }
    if (code === "already_voted") { delete pending[id]; rememberVoted(id); say(T.already, "warn", card); return "voted"; }
    if (code === "daily_quota_exhausted") {
      delete pending[id];
      var secs = +r.body.resets_in || r.wait || 0;
      quotaUntil = Date.now() + secs * 1000;
      quotaText = resetText(secs);
      say(quotaText, "warn", card);
      quotaUsed(secs);
      return "quota";
    }
    if (code === "voting_closed") {
      delete pending[id];
      say(T.closed, "warn", card);
      req("GET", api).then(function (c) {
        var s = c.body.status;
        if (s && s !== "open") { say(closedText[s] || T.closed, "warn", card); closeAll(s); }
      }).catch(function () { /* the first message stands */ });
      return "closed";
    }
    if (code === "rate_limited") { say(fmt(T.rate, { s: r.wait || 60 }), "warn", card); return ""; }
    if (code === "blocked") { delete pending[id]; say(T.blocked, "warn", card); return ""; }
    if (code === "challenge_failed") { say(T.pow_fail, "warn", card); return ""; }
    if (code === "candidate_not_found") { say(T.missing, "warn", card); return ""; }
    if (code === "candidate_withdrawn") { delete pending[id]; say(T.gone, "warn", card); return "closed"; }
    if (code === "voter_required") { say(partnerToken ? T.login : T.voter_fail, "warn", card); return ""; }
    if (r.status >= 500) { say(T.busy, "warn", card); return ""; }
    say(T.generic, "warn", card);
    return "";
  }

  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("button[data-vote]");
    if (!btn || btn.disabled || btn.getAttribute("aria-busy")) return;
    queue = queue.then(function () { return cast(btn); });
  });
  votedToday().forEach(function (id) {
    $$('button[data-vote="' + id.replace(/[^\w-]/g, "") + '"]').forEach(function (b) { setButton(b, "voted"); });
  });
  (function () {
    var until = +sget(quotaKey) || 0;
    if (until > Date.now()) quotaUsed((until - Date.now()) / 1000);
    else if (until) sset(quotaKey, null);
  })();

  /* ---------- search, filters, sort ---------- */
  var list = $("#vs-list");
  if (list) {
    var cards = $$(".card", list), q = $("#vs-q"), fr = $("#vs-region"), fi = $("#vs-industry"), fs = $("#vs-sort");
    var limit = +list.getAttribute("data-limit") || 0, more = $("#vs-more");
    var match = function (card, text, r, i) {
      if (r && card.getAttribute("data-r") !== r) return false;
      if (i && card.getAttribute("data-i") !== i) return false;
      if (!text) return true;
      var digits = text.replace(/^No\.\s*/i, "").replace(/号$/, "").replace(/^0+/, "");
      if (/^\d+$/.test(digits) && card.getAttribute("data-n") === digits) return true;
      var name = $(".nm", card).textContent.toLowerCase();
      return name.indexOf(text.toLowerCase()) >= 0 || card.getAttribute("data-id") === text;
    };
    var apply = function () {
      var text = q ? q.value.trim() : "", r = fr ? fr.value : "", i = fi ? fi.value : "", n = 0;
      cards.forEach(function (c) {
        var ok = match(c, text, r, i);
        if (ok) n += 1;
        c.hidden = !ok || (limit > 0 && !text && n > limit);
      });
      if (more) more.hidden = limit === 0 || !!text || n <= limit;
      var count = $("#vs-count"), empty = $("#vs-empty");
      if (count) count.textContent = fmtN("count", { n: n });
      if (empty) empty.hidden = n > 0;
      if (!C.embed && window.history && history.replaceState) {
        var p = new URLSearchParams(location.search);
        [["q", text], ["region", r], ["industry", i], ["sort", fs && fs.value !== "number" ? fs.value : ""]].forEach(function (kv) {
          if (kv[1]) p.set(kv[0], kv[1]); else p.delete(kv[0]);
        });
        var s = p.toString();
        history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
      }
    };
    var sort = function () {
      var byVotes = fs && fs.value === "votes";
      cards.sort(function (a, b) {
        return byVotes ? (+b.getAttribute("data-v") || 0) - (+a.getAttribute("data-v") || 0) || a.getAttribute("data-n") - b.getAttribute("data-n")
          : a.getAttribute("data-n") - b.getAttribute("data-n");
      });
      cards.forEach(function (c) { list.appendChild(c); });
      apply();
    };
    [q, fr, fi].forEach(function (el) { if (el) el.addEventListener("input", apply); });
    if (fs) fs.addEventListener("change", sort);
    var form = $("#vs-tools");
    if (form) form.addEventListener("submit", function (e) { e.preventDefault(); apply(); if (q) q.blur(); });
    if (more) more.addEventListener("click", function () { limit = 0; apply(); });
    if (limit) apply();
  }

  /* ---------- live counts: a cheap poll while the page is visible ---------- */
  if (C.counts) {
    var last = Date.now();
    var poll = function () {
      if (document.hidden) return;
      last = Date.now();
      req("GET", api + "/tallies").then(function (r) {
        if (r.status !== 200) return;
        var by = {};
        r.body.candidates.forEach(function (x) { by[x.candidate_id] = x.votes; });
        $$("[data-id]").forEach(function (c) { setCount(c, by[c.getAttribute("data-id")]); });
        var t = $("#vs-total");
        if (t && r.body.total >= (+t.textContent.replace(/\D/g, "") || 0)) t.textContent = num(r.body.total);
      }).catch(function () { /* next time */ });
    };
    setInterval(poll, 20000);
    document.addEventListener("visibilitychange", function () { if (!document.hidden && Date.now() - last > 20000) poll(); });
  }

  /* ---------- receipts: "included", checked here from the log's proof ---------- */
  /* RFC 9162 §2.1.3.2 with WebCrypto SHA-256: leaf = H(0x00 || leaf), node = H(0x01 || l || r). */
  var subtle = window.crypto && window.crypto.subtle;
  async function h256(parts) {
    var n = 0, i, at = 0;
    for (i = 0; i < parts.length; i++) n += parts[i].length;
    var all = new Uint8Array(n);
    for (i = 0; i < parts.length; i++) { all.set(parts[i], at); at += parts[i].length; }
    return new Uint8Array(await subtle.digest("SHA-256", all));
  }
  function unhex(x) { var b = new Uint8Array(x.length / 2); for (var i = 0; i < b.length; i++) b[i] = parseInt(x.substr(i * 2, 2), 16); return b; }
  function tohex(b) { return Array.prototype.map.call(b, function (x) { return (x < 16 ? "0" : "") + x.toString(16); }).join(""); }
  async function rootOf(leaf, index, size, path) {
    var fn = index, sn = size - 1, r = await h256([new Uint8Array([0]), leaf]), half = function (x) { return Math.floor(x / 2); };
    for (var i = 0; i < path.length; i++) {
      var p = unhex(path[i]);
      if (sn === 0) return "";
      if (fn % 2 === 1 || fn === sn) {
        r = await h256([new Uint8Array([1]), p, r]);
        while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else r = await h256([new Uint8Array([1]), r, p]);
      fn = half(fn); sn = half(sn);
    }
    return sn === 0 ? tohex(r) : "";
  }
  /* The head's Ed25519 signature, where this browser's WebCrypto has Ed25519 (else null). */
  async function headSigned(head) {
    if (!C.logKey) return null;
    try {
      var key = await subtle.importKey("raw", unhex(C.logKey), { name: "Ed25519" }, false, ["verify"]);
      var msg = new TextEncoder().encode(["voting-service-tree-head/1", head.campaign_id, head.tree_size, head.root_hash, head.timestamp, ""].join("\n"));
      var sig = Uint8Array.from(atob(head.signature), function (ch) { return ch.charCodeAt(0); });
      return await subtle.verify({ name: "Ed25519" }, key, sig, msg);
    } catch (e) { return null; }
  }
  var box = $("#vs-receipts");
  function receipts() {
    var list;
    try { list = JSON.parse(sget("vs_votes_" + C.cid) || "[]"); } catch (e) { list = []; }
    return Array.isArray(list) ? list : [];
  }
  function showReceipts() {
    if (!box) return;
    var list = receipts().slice(-10).reverse(), ul = $("ul", box);
    box.hidden = !list.length;
    ul.textContent = "";
    list.forEach(function (r) {
      var li = document.createElement("li"), card = $('[data-id="' + r.c + '"]');
      li.setAttribute("data-vote-id", r.v);
      li.className = r.ok ? "ok" : (r.bad ? "bad" : "");
      li.textContent = (card ? who(card) : r.c) + " · " + String(r.v).slice(0, 8) + " · " +
        (r.ok ? fmt(T.rc_ok, { n: num(r.ok) }) + (r.sig === false ? " " + T.rc_badsig : r.sig ? "" : " " + T.rc_nosig)
          : r.bad ? T.rc_bad : T.rc_wait);
      ul.appendChild(li);
    });
  }
  async function checkReceipts() {
    if (!box || !subtle || !C.logKey) return; /* no key: this service signs no heads */
    var hr = await req("GET", api + "/log/head").catch(function () { return { status: 0 }; });
    if (hr.status !== 200) return;
    var head = hr.body, list = receipts(), changed = false, sig;
    headSize = head.tree_size;
    for (var i = 0; i < list.length; i++) {
      var r = list[i];
      if (r.ok || r.bad || !(head.tree_size > (r.h || 0))) continue;
      var pr = await req("GET", api + "/log/inclusion?vote_id=" + encodeURIComponent(r.v) + "&size=" + head.tree_size + "&after=" + (r.h || 0)).catch(function () { return { status: 0 }; });
      if (pr.status !== 200) continue; /* not in this head yet: the next one */
      for (var j = 0; j < pr.body.proofs.length; j++) {
        var p = pr.body.proofs[j], f = p.leaf.split("\t");
        if (f[1] !== r.v || f[3] !== r.c) continue;
        var root = await rootOf(new TextEncoder().encode(p.leaf), p.log_index, head.tree_size, p.path);
        if (root === head.root_hash) {
          if (sig === undefined) sig = await headSigned(head);
          r.ok = head.tree_size; r.sig = sig; changed = true;
        } else { r.bad = true; changed = true; }
        break;
      }
    }
    if (changed) sset("vs_votes_" + C.cid, JSON.stringify(list));
    showReceipts();
  }
  if (box) {
    showReceipts();
    checkReceipts();
    setInterval(function () { if (!document.hidden) checkReceipts(); }, 60000);
  }

  /* ---------- share (detail page) ---------- */
  var share = $("#vs-share");
  if (share) {
    share.hidden = false;
    share.addEventListener("click", function () {
      var url = share.getAttribute("data-url"), title = share.getAttribute("data-title");
      if (navigator.share) { navigator.share({ title: title, url: url }).catch(function () { /* cancelled */ }); return; }
      if (navigator.clipboard) navigator.clipboard.writeText(url).then(function () { say(T.copied, "ok"); }, function () { say(url); });
      else say(url);
    });
  }

  /* ---------- embed: report our height, accept a partner token from the parent ---------- */
  if (C.embed && C.parentOrigin && window.parent !== window) {
    var wrap = $("#vs-embed"), sent = 0;
    var report = function () {
      var h = Math.ceil(wrap.getBoundingClientRect().height);
      if (h !== sent) { sent = h; window.parent.postMessage({ type: "vs:height", height: h }, C.parentOrigin); }
    };
    if (window.ResizeObserver) new ResizeObserver(report).observe(wrap); else setInterval(report, 500);
    window.addEventListener("load", report);
    report();
    window.addEventListener("message", function (e) {
      if (e.origin !== C.parentOrigin || e.source !== window.parent || !e.data || e.data.type !== "vs:token") return;
      partnerToken = typeof e.data.token === "string" && e.data.token.length < 4096 ? e.data.token : null;
    });
    window.parent.postMessage({ type: "vs:ready" }, C.parentOrigin);
  }
})();

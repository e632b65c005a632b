/* voting-service ops console: live polling (1 s), SVG charts, controls with confirmation.
   No dependencies; served by the service itself. */
(function () {
  "use strict";
  var cfgEl = document.getElementById("ops-config");
  if (!cfgEl) return;
  var C = JSON.parse(cfgEl.textContent), T = C.t;
  var SVG = "http://www.w3.org/2000/svg";
  var $ = function (s, r) { return (r || document).querySelector(s); };
  var fmt = function (s, o) { return String(s).replace(/\{(\w+)\}/g, function (_, k) { return o[k] == null ? "" : o[k]; }); };
  var locale = C.lang === "en" ? "en-GB" : "zh-CN";
  var num = function (n) { return Number(n).toLocaleString(locale); };
  var word = function (k) { return T[k] != null ? T[k] : k; };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  /* ---------- HTTP: the session cookie is the credential ---------- */
  function request(method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(url, init).then(function (r) {
      if (r.status === 401) { location.reload(); throw new Error("signed out"); }
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!r.ok) { var err = new Error((data && (data.detail || data.title)) || ("HTTP " + r.status)); err.status = r.status; throw err; }
        return data;
      });
    });
  }

  var alertBox = $("#ops-alert"), alertTimer;
  function notice(msg, ok) {
    if (!alertBox) return;
    alertBox.textContent = msg;
    alertBox.className = "alert" + (ok ? " ok" : "");
    alertBox.hidden = false;
    clearTimeout(alertTimer);
    if (ok) alertTimer = setTimeout(function () { alertBox.hidden = true; }, 6000);
  }

  /* ---------- confirmation modal (data-testid="confirm") ---------- */
  function ask(text, needReason) {
    var modal = $("#ops-modal"), ok = $("#ops-modal-ok"), cancel = $("#ops-modal-cancel"), reason = $("#ops-modal-reason");
    return new Promise(function (resolve) {
      $("#ops-modal-text").textContent = text;
      ok.textContent = T.confirm; cancel.textContent = T.cancel;
      reason.hidden = !needReason; reason.value = ""; reason.placeholder = T.reason;
      ok.disabled = !!needReason;
      modal.hidden = false;
      (needReason ? reason : ok).focus();
      function done(value) {
        modal.hidden = true;
        ok.onclick = cancel.onclick = reason.oninput = modal.onkeydown = null;
        resolve(value);
      }
      reason.oninput = function () { ok.disabled = !reason.value.trim(); };
      ok.onclick = function () { done(needReason ? reason.value.trim() : true); };
      cancel.onclick = function () { done(null); };
      modal.onkeydown = function (e) { if (e.key === "Escape") done(null); };
    });
  }

  if (C.page === "list") listPage();
  if (C.page === "campaign") campaignPage();

  /* ---------- campaign list: totals and votes/s, every 2 s ---------- */
  function listPage() {
    function tick() {
      request("GET", "/ops/api/campaigns").then(function (rows) {
        rows.forEach(function (x) {
          var tr = document.querySelector('tr[data-cid="' + x.id + '"]');
          if (!tr) return;
          $('[data-f="total"]', tr).textContent = x.total == null ? "—" : num(x.total);
          $('[data-f="rate"]', tr).textContent = x.rate == null ? "—" : num(x.rate);
          var st = $('[data-f="state"]', tr);
          st.textContent = C.status[x.state] || x.state;
          st.className = "tag tag-" + x.state;
        });
      }).catch(function () { /* next tick */ }).then(function () { setTimeout(tick, 2000); });
    }
    setTimeout(tick, 2000);
  }

  /* ---------- campaign view ---------- */
  function campaignPage() {
    var api = "/ops/api/c/" + encodeURIComponent(C.cid);
    var W = C.window, secs = {}, since = 0, now = 0, settle = 2;
    var cands = {};
    C.candidates.forEach(function (x) { cands[x[0]] = { id: x[0], number: x[1], name: x[2] }; });
    var COLORS = { already_voted: "#1f5fbf", daily_quota_exhausted: "#7b4bb7", rate_limited: "#d98c00", challenge_failed: "#00897b", blocked: "#b3261e", voting_closed: "#5d6675", unavailable: "#e8453c", other: "#9aa3b1" };

    var timer = 0, busy = false;
    function poll() {
      if (busy) return;
      busy = true;
      var q = since ? "?since=" + (since - settle - 1) : "";
      request("GET", api + "/live" + q).then(function (d) {
        now = d.now; settle = d.settle || 2;
        renderState(d);
        renderHealth(d.health, d.redis);
        if (!d.redis) { notice(T.w_redis, false); return; }
        /* the answer is complete for (d.since, d.now]: seconds it leaves out were empty */
        for (var s = d.since + 1; s <= d.now; s++) delete secs[s];
        for (var k in d.seconds) secs[k] = d.seconds[k];
        for (var old in secs) if (+old <= d.now - W) delete secs[old];
        since = d.now;
        renderTotals(d);
        renderRanking(d);
        renderCharts();
        if (alertBox && !alertBox.classList.contains("ok")) alertBox.hidden = true;
      }).catch(function (e) {
        if (e.message !== "signed out") notice(T.offline, false);
      }).then(function () {
        busy = false;
        clearTimeout(timer);
        timer = setTimeout(poll, document.hidden ? 5000 : 1000);
      });
    }
    /* a tab in the background polls every 5 s; back in front it catches up at once */
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && !busy) { clearTimeout(timer); poll(); }
    });

    function renderState(d) {
      var st = $("#ops-state");
      st.textContent = C.status[d.state] || d.state;
      st.className = "tag tag-" + d.state;
      var p = $("#ops-pause"), r = $("#ops-resume");
      if (p) p.hidden = d.status !== "open";
      if (r) r.hidden = d.status !== "paused";
    }

    function sumField(prefix, from, to) {
      var out = {};
      for (var s in secs) {
        if (+s <= from || +s > to) continue;
        var f = secs[s];
        for (var k in f) if (k.indexOf(prefix) === 0) { var name = k.slice(prefix.length); out[name] = (out[name] || 0) + f[k]; }
      }
      return out;
    }

    function renderTotals(d) {
      $("#ops-total").textContent = num(d.total);
      var last = d.now - settle;
      var recent = sumField("o|", last - 10, last);
      $("#ops-rate").textContent = num(Math.round((recent.accepted || 0) / 10 * 10) / 10);
      var all = sumField("o|", d.now - W, d.now), rejected = 0;
      for (var k in all) if (k !== "accepted") rejected += all[k];
      $("#ops-acc30").textContent = num(all.accepted || 0);
      $("#ops-rej30").textContent = num(rejected);
      $("#ops-updated").textContent = new Date(d.now * 1000).toLocaleTimeString(locale, { hour12: false });
      renderSplit($("#ops-channels"), sumField("c|", d.now - W, d.now), function (k) { return C.channels[k] || word(k); });
      renderSplit($("#ops-identity"), sumField("i|", d.now - W, d.now), word);
    }

    function renderSplit(list, counts, label) {
      var keys = Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; });
      var total = keys.reduce(function (n, k) { return n + counts[k]; }, 0);
      clear(list);
      if (!keys.length) { list.appendChild(el("li", { "class": "empty" }, "—")); return; }
      keys.forEach(function (k) {
        var li = el("li"), bar = el("span", { "class": "bar" }), fill = el("i");
        bar.appendChild(fill);
        fill.style.width = (total ? counts[k] / total * 100 : 0).toFixed(1) + "%";
        li.appendChild(el("span", null, label(k)));
        li.appendChild(bar);
        li.appendChild(el("b", null, num(counts[k]) + " · " + (total ? (counts[k] / total * 100).toFixed(1) : "0") + "%"));
        list.appendChild(li);
      });
    }

    function renderRanking(d) {
      var body = $("#ops-rank"), total = d.total || 0;
      var numberOf = function (id) { return cands[id] ? cands[id].number : 1e9; };
      var rows = d.candidates.slice().sort(function (a, b) { return b[1] - a[1] || numberOf(a[0]) - numberOf(b[0]); });
      var top = rows.length ? rows[0][1] : 0;
      rows.forEach(function (x, i) {
        var tr = body.querySelector('tr[data-id="' + x[0] + '"]');
        if (!tr) return;
        $('[data-f="rank"]', tr).textContent = i + 1;
        $('[data-f="votes"]', tr).textContent = num(x[1]);
        $('[data-f="share"]', tr).textContent = (total ? x[1] / total * 100 : 0).toFixed(1) + "%";
        $('[data-f="recent"]', tr).textContent = d.recent_since == null ? "—" : num(x[2]);
        $(".bar i", tr).style.width = (top ? x[1] / top * 100 : 0).toFixed(1) + "%";
        body.appendChild(tr);
      });
    }

    /* ---------- charts: one SVG each, 30 minutes wide ---------- */
    var CW = 720, CH = 170, PL = 40, PB = 20, PT = 8;
    function frame(box, max) {
      var title = box.parentNode.querySelector("h2");
      var s = svg("svg", { viewBox: "0 0 " + CW + " " + CH, role: "img", "aria-label": title ? title.textContent : "" });
      var h = CH - PB - PT;
      for (var i = 0; i <= 4; i++) {
        var y = PT + h - h * i / 4;
        s.appendChild(svg("line", { "class": i ? "grid" : "axis", x1: PL, x2: CW, y1: y, y2: y }));
        var label = svg("text", { x: PL - 6, y: y + 4, "text-anchor": "end" });
        label.textContent = num(Math.round(max * i / 4 * 10) / 10);
        s.appendChild(label);
      }
      [30, 20, 10, 0].forEach(function (m) {
        var x = PL + (CW - PL) * (1 - m * 60 / W);
        var t = svg("text", { x: Math.min(x, CW - 2), y: CH - 5, "text-anchor": m ? "middle" : "end" });
        t.textContent = m ? "-" + m + (C.lang === "en" ? " min" : "分钟") : (C.lang === "en" ? "now" : "现在");
        s.appendChild(t);
      });
      clear(box).appendChild(s);
      return s;
    }
    function series(field) {
      var out = [], last = now - settle;
      for (var s = now - W + 1; s <= last; s++) {
        var f = secs[s];
        out.push(f ? (typeof field === "function" ? field(f) : f[field] || 0) : 0);
      }
      return out;
    }
    function path(values, max, closed) {
      var h = CH - PB - PT, step = (CW - PL) / W, d = "";
      values.forEach(function (v, i) {
        var x = (PL + i * step).toFixed(1), y = (PT + h - (max ? v / max * h : 0)).toFixed(1);
        d += (i ? "L" : "M") + x + " " + y;
      });
      if (closed && values.length) d += "L" + (PL + (values.length - 1) * step).toFixed(1) + " " + (PT + h) + "L" + PL + " " + (PT + h) + "Z";
      return d;
    }
    function niceMax(v) {
      /* four grid steps of 1, 2 or 5 × 10^k: round labels at every line */
      var step = Math.max(v, 4) / 4, p = Math.pow(10, Math.floor(Math.log10(step))), n = step / p;
      return 4 * (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
    }
    function renderCharts() {
      var accepted = series("o|accepted");
      var max = niceMax(Math.max.apply(null, accepted.concat([0])));
      frame($("#ops-chart-votes"), max).appendChild(svg("path", { "class": "area", d: path(accepted, max, true) }));

      var lines = {}, top = 0;
      C.reasons.concat(["other"]).forEach(function (r) {
        lines[r] = series(r === "other" ? function (f) {
          var n = 0;
          for (var k in f) if (k.indexOf("o|") === 0 && k !== "o|accepted" && C.reasons.indexOf(k.slice(2)) < 0) n += f[k];
          return n;
        } : "o|" + r);
        top = Math.max(top, Math.max.apply(null, lines[r].concat([0])));
      });
      var rmax = niceMax(top), chart = frame($("#ops-chart-rejects"), rmax), legend = clear($("#ops-legend"));
      Object.keys(lines).forEach(function (r) {
        var total = lines[r].reduce(function (a, b) { return a + b; }, 0);
        if (total) chart.appendChild(svg("path", { d: path(lines[r], rmax, false), fill: "none", stroke: COLORS[r], "stroke-width": 1.25 }));
        var li = el("li"), sw = el("i");
        sw.style.background = COLORS[r];
        li.appendChild(sw);
        li.appendChild(document.createTextNode(word(r) + " " + num(total)));
        legend.appendChild(li);
      });
    }

    /* ---------- health, in plain words ---------- */
    function renderHealth(h, redisUp) {
      var box = clear($("#ops-health")), list = el("ul", { "class": "health" }), warns = el("ul", { "class": "warns" });
      function row(label, value, state) {
        var li = el("li"), name = el("span");
        name.appendChild(el("i", { "class": "dot " + state }));
        name.appendChild(document.createTextNode(label));
        li.appendChild(name);
        li.appendChild(el("b", null, value));
        list.appendChild(li);
      }
      function warn(text, bad) { warns.appendChild(el("li", { "class": bad ? "bad" : "" }, text)); }
      if (!h) {
        row(T.h_redis, redisUp === false ? T.h_down : T.h_up, redisUp === false ? "bad" : "ok");
        if (redisUp === false) warn(T.w_redis, true);
        box.appendChild(list);
        if (warns.firstChild) box.appendChild(warns);
        return;
      }
      var redisOk = h.redis_up && redisUp !== false;
      row(T.h_redis, redisOk ? T.h_up : T.h_down, redisOk ? "ok" : "bad");
      if (!redisOk) warn(T.w_redis, true);
      row(T.h_postgres, h.postgres_up ? T.h_up : T.h_down, h.postgres_up ? "ok" : "bad");
      if (!h.postgres_up) warn(T.w_postgres, true);
      if (redisOk) {
        row(T.h_durability, h.durable ? T.h_durable : T.h_not_durable, h.durable ? "ok" : "bad");
        list.lastChild.title = h.durability || "";
        if (!h.durable) warn(T.w_durability, true);
      }
      if (h.backlog != null) row(T.h_backlog, fmt(T.entries, { n: num(h.backlog) }), "ok");
      if (h.lag_seconds != null) {
        var lagBad = h.lag_seconds > 30;
        row(T.h_lag, fmt(T.seconds, { n: num(Math.round(h.lag_seconds * 10) / 10) }), lagBad ? "warn" : "ok");
        if (lagBad) warn(fmt(T.w_lag, { s: num(Math.round(h.lag_seconds)) }), false);
      }
      if (h.drift != null) {
        var drifted = h.drift || (h.drifting && h.drifting.length);
        row(T.h_drift, num(h.drift), drifted ? "bad" : "ok");
        if (drifted) warn(fmt(T.w_drift, { n: num(h.drift) }), true);
      } else row(T.h_drift, T.h_unknown, "");
      if (h.repairs && h.repairs.found) {  /* drift repaired by the flushers (issue 23) */
        row(T.h_repairs, fmt(T.repairs, { f: num(h.repairs.found), t: num(h.repairs.tally),
                                          v: num(h.repairs.votes) }), "warn");
      }
      if (h.age_seconds > 30) warn(fmt(T.w_stale, { s: num(Math.round(h.age_seconds)) }), false);
      box.appendChild(list);
      if (warns.firstChild) box.appendChild(warns);
      else box.appendChild(el("p", { "class": "okline" }, T.all_ok));
    }

    /* ---------- pause / resume (admin only) ---------- */
    function control(button, status, question, done) {
      if (!button) return;
      button.addEventListener("click", function () {
        ask(question, false).then(function (yes) {
          if (!yes) return;
          button.disabled = true;
          request("POST", api + "/status", { status: status }).then(function (d) {
            renderState(d);
            notice(done, true);
          }).catch(function (e) { notice(fmt(T.failed, { d: e.message }), false); })
            .then(function () { button.disabled = false; });
        });
      });
    }
    control($("#ops-pause"), "paused", T.confirm_pause, T.paused);
    control($("#ops-resume"), "open", T.confirm_resume, T.resumed);

    /* ---------- suspicious groups ---------- */
    function when(iso) {
      return new Date(iso).toLocaleString(locale, { timeZone: C.tz, month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    }
    function pairs(o, label) {
      return Object.keys(o || {}).map(function (k) { return (label ? label(k) : k) + " " + num(o[k]); }).join("，");
    }
    function loadSuspicious(fresh) {
      var box = $("#ops-suspicious");
      if (!box.firstChild) box.textContent = T.loading;
      request("GET", api + "/suspicious?lang=" + C.lang + (fresh === true ? "&fresh=1" : "")).then(function (d) {
        clear(box);
        if (!d.groups.length) { box.appendChild(el("p", { "class": "empty" }, T.none_suspicious)); return; }
        var list = el("ul", { "class": "groups" });
        d.groups.forEach(function (g) {
          var li = el("li", { "data-testid": "suspicious-group" }), ev = g.evidence, dl = el("dl");
          li.appendChild(el("span", { "class": "score" }, fmt(T.score, { s: g.score })));
          li.appendChild(el("p", null, g.description));
          function item(k, v) { if (v) { dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, v)); } }
          item(T.ev_time, when(ev.first_at) + " – " + when(ev.last_at));
          item(T.ev_votes, num(ev.votes));
          item(T.ev_voters, num(ev.voters));
          item(T.ev_networks, pairs(ev.prefixes));
          item(T.ev_channels, pairs(ev.channels, function (k) { return C.channels[k] || word(k); }));
          item(T.ev_candidates, pairs(ev.candidates, function (k) { return cands[k] ? cands[k].number + " " + cands[k].name : k; }));
          item(T.ev_attempts, pairs(ev.attempts_today));
          li.appendChild(dl);
          if (C.canWrite) {
            var b = el("button", { type: "button", "class": "btn small warn", "data-testid": "strike" }, T.strike);
            b.addEventListener("click", function () {
              ask(T.confirm_strike + "\n" + g.description, true).then(function (reason) {
                if (!reason) return;
                b.disabled = true;
                request("POST", api + "/invalidations", { reason: reason, criteria: g.criteria }).then(function (r) {
                  notice(fmt(T.struck, { n: num(r.votes_invalidated) }), true);
                  loadSuspicious();
                }).catch(function (e) { b.disabled = false; notice(fmt(T.failed, { d: e.message }), false); });
              });
            });
            li.appendChild(b);
          }
          list.appendChild(li);
        });
        box.appendChild(list);
      }).catch(function (e) { box.textContent = fmt(T.failed, { d: e.message }); });
    }
    $("#ops-sus-refresh").addEventListener("click", function () { loadSuspicious(true); });

    /* ---------- blocklist ---------- */
    function loadBlocks() {
      var box = $("#ops-blocks");
      request("GET", api + "/blocklist").then(function (rows) {
        clear(box);
        if (!rows.length) { box.appendChild(el("p", { "class": "empty" }, T.no_blocks)); return; }
        var table = el("table", { "class": "grid" }), body = el("tbody");
        rows.forEach(function (r) {
          var tr = el("tr", { "data-testid": "block-row" });
          tr.appendChild(el("td", null, r.kind === "ip" ? "IP" : T.k_voter));
          tr.appendChild(el("td", null)).appendChild(el("code", null, r.value));
          tr.appendChild(el("td", null, r.reason));
          tr.appendChild(el("td", null, (r.campaign_id ? "" : T.all_campaigns + " · ") + (r.expires_at ? fmt(T.until, { t: when(r.expires_at) }) : T.forever)));
          var cell = el("td");
          if (C.canWrite) {
            var b = el("button", { type: "button", "class": "btn small" }, T.remove);
            b.addEventListener("click", function () {
              ask(T.confirm_remove, false).then(function (yes) {
                if (!yes) return;
                request("DELETE", "/ops/api/blocklist/" + r.id).then(function () { notice(T.removed, true); loadBlocks(); })
                  .catch(function (e) { notice(fmt(T.failed, { d: e.message }), false); });
              });
            });
            cell.appendChild(b);
          }
          tr.appendChild(cell);
          body.appendChild(tr);
        });
        table.appendChild(body);
        box.appendChild(table);
      }).catch(function (e) { box.textContent = fmt(T.failed, { d: e.message }); });
    }
    var form = $("#ops-block-form");
    if (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var f = form.elements;
        var body = { kind: f.kind.value, value: f.value.value.trim(), reason: f.reason.value.trim(), scope: f.scope.value };
        if (f.hours.value) body.hours = parseInt(f.hours.value, 10);
        request("POST", api + "/blocklist", body).then(function () {
          form.reset(); notice(T.added, true); loadBlocks();
        }).catch(function (err) { notice(fmt(T.failed, { d: err.message }), false); });
      });
    }

    Array.prototype.forEach.call(document.querySelectorAll(".channels pre"), function (pre) {
      if (!navigator.clipboard) return;
      var b = el("button", { type: "button", "class": "btn small" }, T.copy);
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(pre.textContent).then(function () { b.textContent = T.copied; });
      });
      pre.parentNode.appendChild(b);
    });

    poll();
    loadBlocks();
    loadSuspicious();
    setInterval(loadSuspicious, 60000);
  }
})();

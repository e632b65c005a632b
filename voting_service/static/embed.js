/* Vote widget for media pages:
   <script src="https://VOTE-HOST/embed.js" data-campaign="ID" data-channel="CHANNEL" async></script>
   Optional: data-candidate="ID" (one candidate), data-partner-token="JWT" (logged-in users),
   data-lang="en". VotingEmbed.setPartnerToken(jwt) hands over a token obtained later. */
(function () {
  "use strict";
  var me = document.currentScript;
  var src = me ? me.src : "";
  if (!src) {
    var found = document.querySelectorAll('script[src*="/embed.js"]');
    src = found.length ? found[found.length - 1].src : "";
  }
  if (!src) return;
  var base = new URL(src).origin;
  var all = window.__votingEmbed = window.__votingEmbed || {};
  var state = all[base] = all[base] || { frames: [], listening: false };
  var frames = state.frames;

  function mount(s) {
    if (s.getAttribute("data-vs-mounted")) return;
    var cid = s.getAttribute("data-campaign"), channel = s.getAttribute("data-channel");
    if (!cid || !channel) return;
    s.setAttribute("data-vs-mounted", "1");
    var q = "?channel=" + encodeURIComponent(channel) + "&origin=" + encodeURIComponent(location.origin);
    var cand = s.getAttribute("data-candidate"), lang = s.getAttribute("data-lang");
    if (cand) q += "&candidate=" + encodeURIComponent(cand);
    if (lang) q += "&lang=" + encodeURIComponent(lang);
    var f = document.createElement("iframe");
    f.src = base + "/embed/" + encodeURIComponent(cid) + q;
    f.title = s.getAttribute("data-title") || (lang === "en" ? "Vote" : "投票");
    f.loading = "lazy";
    f.setAttribute("scrolling", "no");
    f.style.cssText = "display:block;width:100%;max-width:40rem;height:" + (cand ? 260 : 640) + "px;border:0;margin:0 auto;overflow:hidden";
    s.parentNode.insertBefore(f, s.nextSibling);
    frames.push({ frame: f, campaign: cid, token: s.getAttribute("data-partner-token") || "" });
  }

  function entryFor(source) {
    for (var i = 0; i < frames.length; i++) if (frames[i].frame.contentWindow === source) return frames[i];
    return null;
  }

  function handOver(entry) {
    if (entry.token && entry.frame.contentWindow) entry.frame.contentWindow.postMessage({ type: "vs:token", token: entry.token }, base);
  }

  if (!state.listening) {
    state.listening = true;
    window.addEventListener("message", function (e) {
      if (e.origin !== base || !e.data) return;
      var entry = entryFor(e.source);
      if (!entry) return;
      if (e.data.type === "vs:height") {
        var h = Math.max(80, Math.min(20000, Math.ceil(+e.data.height || 0)));
        entry.frame.style.height = h + "px";
      } else if (e.data.type === "vs:ready") {
        handOver(entry);
      }
    });
    var previous = window.VotingEmbed;
    window.VotingEmbed = {
      setPartnerToken: function (token, campaign) {
        frames.forEach(function (entry) {
          if (!campaign || entry.campaign === campaign) { entry.token = token; handOver(entry); }
        });
        if (previous) previous.setPartnerToken(token, campaign);
      }
    };
  }

  var scripts = document.querySelectorAll("script[data-campaign]");
  for (var i = 0; i < scripts.length; i++) if (scripts[i].src.indexOf(base + "/embed.js") === 0) mount(scripts[i]);
})();

/* The published results page: links to the lookup of each vote this device cast. */
(function () {
  "use strict";
  var main = document.getElementById("vs-results"), box = document.getElementById("vs-mine");
  if (!main || !box) return;
  var list;
  try { list = JSON.parse(localStorage.getItem("vs_votes_" + main.getAttribute("data-cid")) || "[]"); } catch (e) { return; }
  if (!Array.isArray(list) || !list.length) return;
  var ul = box.querySelector("ul"), lang = /[?&]lang=en\b/.test(location.search) ? "&lang=en" : "";
  list.slice().reverse().forEach(function (x) {
    if (!x || typeof x.v !== "string" || !/^[A-Za-z0-9_-]{8,64}$/.test(x.v)) return;
    var li = document.createElement("li"), a = document.createElement("a");
    a.href = "?vote=" + encodeURIComponent(x.v) + lang;
    a.textContent = (x.d || "") + " · " + (x.c || "") + " · " + x.v.slice(0, 12) + "…";
    li.appendChild(a);
    ul.appendChild(li);
  });
  box.hidden = !ul.children.length;
})();

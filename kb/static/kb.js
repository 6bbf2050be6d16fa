// Highlights the section a search hit points to, and the searched words in it.
(function () {
  "use strict";
  function sectionNodes(heading) {
    var nodes = [heading];
    var n = heading.nextElementSibling;
    while (n && n.tagName !== "H2") { nodes.push(n); n = n.nextElementSibling; }
    return nodes;
  }
  function markTerms(root, terms) {
    if (!terms.length) { return; }
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, null);
    var texts = [];
    while (walker.nextNode()) { texts.push(walker.currentNode); }
    texts.forEach(function (node) {
      var text = node.nodeValue, lower = text.toLowerCase(), hits = [];
      terms.forEach(function (t) {
        var i = lower.indexOf(t);
        while (i !== -1) { hits.push([i, i + t.length]); i = lower.indexOf(t, i + t.length); }
      });
      if (!hits.length) { return; }
      hits.sort(function (a, b) { return a[0] - b[0]; });
      var frag = document.createDocumentFragment(), pos = 0;
      hits.forEach(function (h) {
        if (h[0] < pos) { return; }
        frag.appendChild(document.createTextNode(text.slice(pos, h[0])));
        var m = document.createElement("mark");
        m.textContent = text.slice(h[0], h[1]);
        frag.appendChild(m);
        pos = h[1];
      });
      frag.appendChild(document.createTextNode(text.slice(pos)));
      node.parentNode.replaceChild(frag, node);
    });
  }
  function highlight() {
    var old = document.querySelectorAll(".hit-section");
    for (var i = 0; i < old.length; i++) { old[i].classList.remove("hit-section"); }
    if (!location.hash) { return; }
    var id;
    try { id = decodeURIComponent(location.hash.slice(1)); } catch (e) { return; }
    var target = document.getElementById(id);
    if (!target || target.tagName !== "H2") { return; }
    var nodes = sectionNodes(target);
    var params = new URLSearchParams(location.search);
    var terms = (params.get("hl") || "").toLowerCase().split(/\s+/).filter(function (t) { return t.length > 1; }).slice(0, 8);
    nodes.forEach(function (n) { n.classList.add("hit-section"); markTerms(n, terms); });
    target.scrollIntoView({ block: "start" });
  }
  window.addEventListener("hashchange", highlight);
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", highlight); } else { highlight(); }
})();

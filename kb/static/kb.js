// Highlights the section a search hit points to, and the searched words in it.
(function () {
  "use strict";
  // Question words a Chinese query is full of but that are no use to mark.
  var STOP = ["什么", "怎么", "怎样", "如何", "哪些", "哪个", "为什么", "是否", "是不是", "有没有",
    "可以", "能否", "应该", "需要", "这个", "那个", "一个", "我们", "你们", "他们", "自己"];
  var segmenter = null;
  try {
    if (window.Intl && Intl.Segmenter) { segmenter = new Intl.Segmenter("zh", { granularity: "word" }); }
  } catch (e) { segmenter = null; }
  // The words to mark: each space-separated query word found as it is in the section, else
  // (a Chinese question typed without spaces: 主席团闭会期间做什么) its words of 2+ characters,
  // a one-character word joined to the word before it when the section has both together
  // (主席 + 团 → 主席团).
  function termsFor(query, text) {
    var out = [];
    function add(t) { if (t.length > 1 && STOP.indexOf(t) === -1 && out.indexOf(t) === -1) { out.push(t); } }
    query.toLowerCase().split(/\s+/).forEach(function (w) {
      if (w.length < 2) { return; }
      if (text.indexOf(w) !== -1 || !segmenter) { add(w); return; }
      var it = segmenter.segment(w)[Symbol.iterator](), step, prev = null;
      while (!(step = it.next()).done) {
        var seg = step.value.segment;
        if (!step.value.isWordLike || STOP.indexOf(seg) !== -1) { prev = null; continue; }
        if (seg.length === 1) {
          var i = prev === null ? -1 : out.indexOf(prev);
          if (i !== -1 && text.indexOf(prev + seg) !== -1) { out[i] = prev = prev + seg; } else { prev = null; }
          continue;
        }
        add(seg);
        prev = seg;
      }
    });
    return out.slice(0, 12);
  }
  function sectionNodes(heading) {
    var nodes = [heading];
    var n = heading.nextElementSibling;
    while (n && n.tagName !== "H2") { nodes.push(n); n = n.nextElementSibling; }
    return nodes;
  }
  function markTerms(root, terms) {
    if (!terms.length) { return; }
    // text already marked (an earlier visit to this section) is left alone
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: function (n) { return n.parentNode.closest("mark") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT; }
    });
    var texts = [];
    while (walker.nextNode()) { texts.push(walker.currentNode); }
    texts.forEach(function (node) {
      var text = node.nodeValue, lower = text.toLowerCase(), hits = [];
      terms.forEach(function (t) {
        var i = lower.indexOf(t);
        while (i !== -1) { hits.push([i, i + t.length]); i = lower.indexOf(t, i + t.length); }
      });
      if (!hits.length) { return; }
      hits.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; }); // longest first
      var frag = document.createDocumentFragment(), pos = 0, last = null;
      hits.forEach(function (h) {
        if (h[0] < pos) { return; }
        if (last && h[0] === pos) { last.textContent += text.slice(h[0], h[1]); pos = h[1]; return; } // 闭会|期间 → one mark
        frag.appendChild(document.createTextNode(text.slice(pos, h[0])));
        last = document.createElement("mark");
        last.textContent = text.slice(h[0], h[1]);
        frag.appendChild(last);
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
    var text = nodes.map(function (n) { return n.textContent; }).join("\n").toLowerCase();
    var terms = termsFor(params.get("hl") || "", text);
    nodes.forEach(function (n) { n.classList.add("hit-section"); markTerms(n, terms); });
    target.scrollIntoView({ block: "start" });
  }
  window.addEventListener("hashchange", highlight);
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", highlight); } else { highlight(); }
})();

// Tap a law citation in a lesson to preview the article's text under the paragraph.
(function () {
  "use strict";
  // UI texts come from this script's tag (data-msg-*, translated by base.html).
  var script = document.currentScript;
  function msg(name) { return (script && script.getAttribute("data-msg-" + name)) || ""; }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.cite") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    var block = link.closest("p, li, td, div") || link.parentNode;
    var open = block.nextElementSibling;
    if (open && open.classList.contains("cite-preview") && open.getAttribute("data-for") === link.href) {
      open.remove();
      event.preventDefault();
      return;
    }
    var url = "/api/v1/laws/" + encodeURIComponent(link.getAttribute("data-law")) + "/articles/" +
      encodeURIComponent(link.getAttribute("data-article")) +
      (link.getAttribute("data-version") ? "?v=" + encodeURIComponent(link.getAttribute("data-version")) : "");
    event.preventDefault();
    fetch(url, { headers: { "Accept": "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error(String(r.status)); }
      return r.json();
    }).then(function (data) {
      var box = document.createElement("aside");
      box.className = "cite-preview";
      box.setAttribute("data-for", link.href);
      box.setAttribute("role", "note");
      var close = document.createElement("button");
      close.type = "button";
      close.className = "link close";
      close.textContent = "×";
      close.setAttribute("aria-label", msg("close"));
      close.addEventListener("click", function () { box.remove(); link.focus(); });
      var title = document.createElement("strong");
      title.textContent = data.title + " " + data.label +
        (data.current ? "" : msg("version").replace("{date}", data.version_date));
      box.appendChild(close);
      box.appendChild(title);
      data.text.split("\n").forEach(function (line) {
        var p = document.createElement("p");
        p.textContent = line;
        box.appendChild(p);
      });
      var more = document.createElement("a");
      more.href = data.url;
      more.textContent = msg("open-law");
      box.appendChild(more);
      var old = block.parentNode.querySelector(".cite-preview");
      if (old) { old.remove(); }
      block.parentNode.insertBefore(box, block.nextSibling);
    }).catch(function () { window.location.href = link.href; });
  });
})();

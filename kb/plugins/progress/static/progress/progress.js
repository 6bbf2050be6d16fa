// Lesson progress: sends a heartbeat every 15 s while the page is visible and the reader was
// active (scroll, touch, key) in the last minute. The server decides how much time counts.
(function () {
  "use strict";
  var panel = document.querySelector(".progress-panel[data-beat-url]");
  var article = document.querySelector("article.lesson[data-lesson-id]");
  if (!panel || !article || !window.fetch) { return; }
  var lessonId = parseInt(article.getAttribute("data-lesson-id"), 10);
  var url = panel.getAttribute("data-beat-url");
  var token = panel.getAttribute("data-csrf");
  var INTERVAL = 15000, IDLE = 60000;
  var lastActive = Date.now();
  var maxScroll = 0;

  function fraction() {
    var rect = article.getBoundingClientRect();
    var seen = window.innerHeight - rect.top;
    var f = rect.height > 0 ? seen / rect.height : 1;
    return Math.max(0, Math.min(1, f));
  }
  function active() { lastActive = Date.now(); maxScroll = Math.max(maxScroll, fraction()); }
  ["scroll", "touchstart", "keydown", "mousedown", "wheel"].forEach(function (name) {
    window.addEventListener(name, active, { passive: true });
  });

  function send() {
    var at = fraction();
    maxScroll = Math.max(maxScroll, at);
    var body = JSON.stringify({ lesson_id: lessonId, scroll: maxScroll, at: at });
    fetch(url, { method: "POST", credentials: "same-origin",
                 headers: { "Content-Type": "application/json", "X-CSRFToken": token },
                 body: body })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var label = panel.querySelector("[data-progress-minutes]");
        // The texts come from the page (data-*, translated by the template).
        if (label) {
          label.textContent = label.getAttribute("data-progress-minutes").replace("{m}", String(Math.floor(data.seconds / 60)));
        }
        if (data.just_completed) {
          var p = document.createElement("p");
          p.className = "progress-done";
          p.textContent = "✓ " + (panel.getAttribute("data-msg-done") || "");
          panel.insertBefore(p, panel.firstChild);
        }
      })
      .catch(function () { /* offline: the next heartbeat tries again */ });
  }

  function tick() {
    if (document.visibilityState === "visible" && Date.now() - lastActive < IDLE) { send(); }
  }

  // Resume where the reader left off when they came from "continue learning".
  var resume = parseFloat(panel.getAttribute("data-resume") || "0");
  if (/[?&]resume=1/.test(window.location.search) && !window.location.hash && resume > 0.02) {
    var top = article.getBoundingClientRect().top + window.pageYOffset;
    window.scrollTo(0, Math.max(0, top + article.offsetHeight * resume - window.innerHeight));
  }
  if (document.visibilityState === "visible") { send(); }  // starts the clock on the server
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { lastActive = Date.now(); send(); }
  });
  window.setInterval(tick, INTERVAL);
})();

// Live page: poll the session's JSON and redraw who is in and who is not yet in.
(function () {
  "use strict";
  var root = document.querySelector(".att-live");
  if (!root) { return; }
  var url = root.getAttribute("data-json");

  function fill(list, people, withTime) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    people.forEach(function (p) {
      var li = document.createElement("li");
      li.appendChild(document.createTextNode(p.name + " "));
      var meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = [p.org, p.status, withTime ? p.at : ""].join(" ").trim();
      li.appendChild(meta);
      list.appendChild(li);
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        document.getElementById("att-live-count").textContent = data.count;
        document.getElementById("att-live-enrolled").textContent = data.enrolled;
        fill(document.getElementById("att-present"), data.present, true);
        fill(document.getElementById("att-missing"), data.missing, false);
      })
      .catch(function () { /* try again at the next tick */ })
      .then(function () { window.setTimeout(poll, 3000); });
  }

  window.setTimeout(poll, 3000);
})();

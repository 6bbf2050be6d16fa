// Tables with a "select all" checkbox in the header.
(function () {
  "use strict";
  document.querySelectorAll(".att-check-all").forEach(function (all) {
    all.addEventListener("change", function () {
      var table = all.closest("table");
      table.querySelectorAll("tbody input[type=checkbox]").forEach(function (box) { box.checked = all.checked; });
    });
  });
})();

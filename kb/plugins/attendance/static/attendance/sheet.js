// Sign-in sheet: the print button.
(function () {
  "use strict";
  document.querySelectorAll(".att-print").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
})();

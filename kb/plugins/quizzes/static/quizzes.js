// Quizzes: save each answer as it changes, count down the server's deadline, auto-submit.
(function () {
  "use strict";
  var form = document.getElementById("quiz-form");
  if (!form) { return; }
  var saveUrl = form.getAttribute("data-save-url");
  var submitUrl = form.getAttribute("data-submit-url");
  var token = (form.querySelector("input[name=csrf_token]") || {}).value || "";
  var submitting = false;
  // UI texts come from the page (data-msg-*, translated by the template): no catalogue here.
  function msg(name) { return form.getAttribute("data-msg-" + name) || ""; }

  function responseOf(fieldset) {
    var values = [];
    fieldset.querySelectorAll("input").forEach(function (input) {
      if (input.type === "radio" || input.type === "checkbox") {
        if (input.checked) { values.push(input.value); }
      } else if (input.value.trim() !== "") { values.push(input.value); }
    });
    return values;
  }

  function save(fieldset) {
    var state = fieldset.querySelector(".save-state");
    var body = JSON.stringify({question_id: Number(fieldset.getAttribute("data-question")),
                               response: responseOf(fieldset)});
    if (state) { state.textContent = msg("saving"); }
    return fetch(saveUrl, {method: "POST", credentials: "same-origin", body: body,
                           headers: {"Content-Type": "application/json", "Accept": "application/json",
                                     "X-CSRFToken": token}})
      .then(function (r) { return r.json().then(function (d) { return [r.status, d]; }); })
      .then(function (res) {
        var data = res[1];
        if (data.ok) { if (state) { state.textContent = msg("saved"); } }
        else {
          if (state) { state.textContent = data.error || msg("unsaved"); }
          if (data.status !== "open") { window.location.reload(); }
        }
      })
      .catch(function () { if (state) { state.textContent = msg("offline"); } });
  }

  var timers = {};
  form.querySelectorAll("fieldset.quiz-q").forEach(function (fieldset) {
    var id = fieldset.getAttribute("data-question");
    fieldset.addEventListener("change", function () { save(fieldset); });
    fieldset.addEventListener("input", function (ev) {
      if (ev.target.type !== "text") { return; }
      clearTimeout(timers[id]);
      timers[id] = setTimeout(function () { save(fieldset); }, 600);
    });
  });

  var submit = document.getElementById("quiz-submit");
  if (submit) {
    submit.addEventListener("click", function (ev) {
      if (submitting) { return; }
      var msg = submit.getAttribute("data-confirm");
      if (msg && !window.confirm(msg)) { ev.preventDefault(); return; }
      submitting = true;
    });
  }

  var timer = document.getElementById("quiz-timer");
  if (timer) {
    var remaining = Number(timer.getAttribute("data-remaining"));
    var end = Date.now() + remaining * 1000;
    var out = timer.querySelector("strong");
    var tick = function () {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      out.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left <= 60) { timer.classList.add("urgent"); }
      if (left <= 0) {
        clearInterval(handle);
        if (!submitting) {
          submitting = true;
          form.setAttribute("action", submitUrl);
          form.submit();
        }
      }
    };
    var handle = setInterval(tick, 1000);
    tick();
  }
})();

// Copy buttons (`<button data-copy="input-id" hidden>`, `data-copy-what` naming what is copied
// if not a link): shown only when this script runs.
// The Clipboard API where the browser allows it; otherwise the link is selected and copied
// with the older copy command; if neither works the link stays selected for the user to copy.
(function () {
  "use strict";
  var status = function (text) {
    var live = document.getElementById("copy-status");
    if (live) { live.textContent = text; }
  };
  var show = function (button, ok) {
    var what = button.getAttribute("data-copy-what") || "Link";
    button.textContent = ok ? "Copied" : "Selected";
    button.classList.toggle("done", ok);
    status(ok ? what + " copied" : what + " selected: copy it with your device's copy command");
    clearTimeout(button._reset);
    button._reset = setTimeout(function () {
      button.textContent = "Copy";
      button.classList.remove("done");
    }, 4000);
  };
  var fallback = function (button, input) {
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    show(button, ok);
  };
  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("[data-copy]");
    Array.prototype.forEach.call(buttons, function (button) {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(
            function () { show(button, true); },
            function () { fallback(button, input); }
          );
        } else {
          fallback(button, input);
        }
      });
    });
  });
})();

// The console's code field (`<input data-code-check="output-id">`): says whose code it is as
// staff type, from /console/codes/check (same origin, the member's session cookie). Without
// this script the form's "Check code" button asks the server instead; with it, that button
// goes (so Enter in the form records the referral, as its main button).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var inputs = document.querySelectorAll("[data-code-check]");
    Array.prototype.forEach.call(inputs, function (input) {
      var output = document.getElementById(input.getAttribute("data-code-check"));
      if (!output || !window.fetch) { return; }
      var button = input.form && input.form.querySelector("[name=check_code]");
      if (button) { button.remove(); }
      var timer = null;
      var asked = 0;
      var show = function (check) {
        output.textContent = check ? check.message : "";
        output.classList.toggle("bad", !!check && !check.usable);
      };
      var ask = function () {
        var code = input.value.trim();
        var mine = ++asked;
        if (!code) { show(null); return; }
        fetch("/console/codes/check?code=" + encodeURIComponent(code), {
          credentials: "same-origin",
          headers: { "Accept": "application/json" }
        }).then(function (res) {
          return res.ok ? res.json() : null;
        }).then(function (check) {
          if (mine === asked) { show(check); }
        }, function () {
          if (mine === asked) { show(null); }
        });
      };
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(ask, 250);
      });
    });
  });
})();

// A live example (`<form data-example="/path">` with an `#example-result` region): as the form
// is edited, its fields are posted to the path (same origin, with the form's CSRF token) and
// the region shows the answer, the same section the form's "Preview" button renders without
// this script. Only the newest answer is shown.
(function () {
  "use strict";
  if (!window.fetch || !window.FormData || !window.URLSearchParams) { return; }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-example]");
    var out = document.getElementById("example-result");
    if (!form || !out) { return; }
    var timer = null;
    var asked = 0;
    var update = function () {
      var mine = ++asked;
      fetch(form.getAttribute("data-example"), {
        method: "POST",
        credentials: "same-origin",
        body: new URLSearchParams(new FormData(form))
      }).then(function (res) { return res.text(); }).then(function (html) {
        if (mine === asked) { out.innerHTML = html; }
      }).catch(function () { /* the Preview button still works */ });
    };
    var soon = function () {
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    };
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
  });
})();

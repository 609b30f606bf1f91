// corral console: the little the pages need beyond htmx. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";

  // Times arrive as <time datetime="...Z">; show them in the browser's own time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.textContent = when.toLocaleString();
      el.title = el.getAttribute("datetime");
      el.dataset.local = "1";
    });
    // Forms with local date-times say which zone they were typed in.
    root.querySelectorAll("input[data-tz-offset]").forEach(function (el) {
      el.value = String(new Date().getTimezoneOffset());
    });
  }

  // Buttons that need a second thought: <button data-confirm="Delete app web?">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });
  document.addEventListener("htmx:sseMessage", function (event) { localTimes(event.target); });
})();

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

  // A search box inside a form (the run form's node picker) searches on Enter; it does not send the form.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.matches && event.target.matches("input[data-no-submit]")) {
      event.preventDefault();
    }
  });

  // A live task stream that starts from the first line (a new connection, not a resumed one) says "reset"
  // first: what the page shows of the output is emptied, so no line appears twice.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type !== "reset") return;
    var live = event.target.closest("[sse-connect]");
    if (live) live.querySelectorAll("pre.output").forEach(function (pane) { pane.textContent = ""; });
    event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });
  document.addEventListener("htmx:sseMessage", function (event) { localTimes(event.target); });
})();

// Renders the manager's OpenAPI document with the vendored Swagger UI. A file of its own, not an inline
// script: the page's Content-Security-Policy runs scripts from this server's files only.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    // No badge fetched from the validator's site: the page talks to this server only.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();

// Typeset the equations that pymdownx.arithmatex (generic mode) marks, with the local KaTeX.
// Only elements of class "arithmatex" are touched: text from the data is never read as math.
(function () {
  "use strict";
  function typeset(root) {
    if (typeof katex === "undefined") return;
    root.querySelectorAll(".arithmatex").forEach(function (element) {
      if (element.dataset.kdTypeset) return;
      var tex = element.textContent.trim();
      var display = element.tagName === "DIV";
      var wrapped = display ? /^\\\[([\s\S]*)\\\]$/ : /^\\\(([\s\S]*)\\\)$/;
      var match = tex.match(wrapped);
      if (match) tex = match[1];
      katex.render(tex, element, { displayMode: display, throwOnError: false, trust: false });
      element.dataset.kdTypeset = "1";
    });
  }
  // Material's instant navigation swaps pages without reloading: document$ emits on each.
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { typeset(document); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  }
})();

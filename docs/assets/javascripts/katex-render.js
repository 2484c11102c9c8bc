// Typeset the equations that pymdownx.arithmatex (generic mode) marks, with the local KaTeX.
// Only elements of class "arithmatex" are touched: text from the data is never read as math.
// Notebook pages (our own code, rendered by nbconvert) keep $...$ in their Markdown cells:
// those cells, and only those, go through KaTeX's auto-render.
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
    if (typeof renderMathInElement === "undefined") return;
    root.querySelectorAll(".jupyter-wrapper .jp-RenderedMarkdown").forEach(function (cell) {
      renderMathInElement(cell, {
        delimiters: [
          { left: "$$", right: "$$", display: true },
          { left: "$", right: "$", display: false },
          { left: "\\(", right: "\\)", display: false },
          { left: "\\[", right: "\\]", display: true }
        ],
        throwOnError: false,
        trust: false
      });
    });
  }
  // Material's instant navigation swaps pages without reloading: document$ emits on each.
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { typeset(document); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  }
})();

// Client-side filtering of the all-papers table by title/author words, year and venue.
// Reads the rows' data-* attributes and only toggles visibility: no HTML is built from data.
(function () {
  "use strict";
  function attach(form) {
    var table = document.getElementById(form.dataset.kdFilter);
    if (!table || form.dataset.kdAttached) return;
    form.dataset.kdAttached = "1";
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    function apply() {
      var words = form.elements.text.value.toLowerCase().split(/\s+/).filter(Boolean);
      var year = form.elements.year.value;
      var venue = form.elements.venue.value;
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.dataset.text || "";
        var keep = (!year || row.dataset.year === year) &&
          (!venue || row.dataset.venue === venue) &&
          words.every(function (word) { return text.indexOf(word) !== -1; });
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      form.elements.count.value = shown + " of " + rows.length + " papers";
    }
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    apply();
  }
  function attachAll() {
    document.querySelectorAll("form[data-kd-filter]").forEach(attach);
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(attachAll);
  } else {
    document.addEventListener("DOMContentLoaded", attachAll);
  }
})();

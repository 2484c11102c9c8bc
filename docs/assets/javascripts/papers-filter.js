// Client-side filtering of the all-papers table: title/key words, author, year, venue, leaf,
// "has code" and "implemented here". Reads the rows' data-* attributes and only toggles
// visibility: no HTML is built from data. The filters live in the address (?author=...), so an
// author's name elsewhere on the site links to their papers, and a filtered view can be shared.
(function () {
  "use strict";
  var FIELDS = ["text", "author", "year", "venue", "leaf", "code", "implemented"];

  function words(value) {
    return value.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function attach(form) {
    var table = document.getElementById(form.dataset.kdFilter);
    if (!table || form.dataset.kdAttached) return;
    form.dataset.kdAttached = "1";
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var el = form.elements;

    function fromAddress() {
      var query = new URLSearchParams(window.location.search);
      FIELDS.forEach(function (name) {
        var field = el[name];
        if (!field || !query.has(name)) return;
        if (field.type === "checkbox") field.checked = query.get(name) === "1";
        else field.value = query.get(name);
      });
    }

    function toAddress() {
      var query = new URLSearchParams();
      FIELDS.forEach(function (name) {
        var field = el[name];
        if (!field) return;
        if (field.type === "checkbox") { if (field.checked) query.set(name, "1"); }
        else if (field.value) query.set(name, field.value);
      });
      var search = query.toString();
      history.replaceState(null, "", window.location.pathname + (search ? "?" + search : "") + window.location.hash);
    }

    function apply() {
      var text = words(el.text.value);
      var author = words(el.author.value);
      var year = el.year.value, venue = el.venue.value, leaf = el.leaf.value;
      var code = el.code.checked, implemented = el.implemented.checked;
      var shown = 0;
      rows.forEach(function (row) {
        var d = row.dataset;
        var keep = (!year || d.year === year) &&
          (!venue || d.venue === venue) &&
          (!leaf || (" " + (d.leaves || "") + " ").indexOf(" " + leaf + " ") !== -1) &&
          (!code || d.code === "1") &&
          (!implemented || d.implemented === "1") &&
          text.every(function (w) { return (d.text || "").indexOf(w) !== -1; }) &&
          author.every(function (w) { return (d.authors || "").indexOf(w) !== -1; });
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      el.count.value = shown + " of " + rows.length + " papers";
    }

    function update() { apply(); toAddress(); }
    fromAddress();
    form.addEventListener("input", update);
    form.addEventListener("change", update);
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

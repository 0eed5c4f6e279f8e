(function () {
  "use strict";
  var tbody = document.getElementById("rows");
  var lines = Array.prototype.slice.call(tbody.rows);
  var heads = Array.prototype.slice.call(document.querySelectorAll("#board thead th[data-col]"));
  var filters = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("f-search");
  var showRef = document.getElementById("show-ref");
  var pageSize = document.getElementById("page-size");
  var status = document.getElementById("status");
  var prov = JSON.parse(document.getElementById("provenance").textContent);
  var state = {col: -1, dir: 1, page: 0};
  var keyCache = {};
  var text = lines.map(function (tr) { return tr.textContent.toLowerCase(); });

  function keys(col) {
    // Numbers sort by their exact value (data-v), text by its characters; missing values are null.
    if (keyCache[col]) return keyCache[col];
    var numeric = heads[col].getAttribute("data-type") === "num";
    keyCache[col] = lines.map(function (tr) {
      var td = tr.cells[col];
      if (numeric) { var v = td.getAttribute("data-v"); return v === "" || v === null ? null : parseFloat(v); }
      var t = td.textContent; return t === "" ? null : t;
    });
    return keyCache[col];
  }
  function visible(i) {
    var tr = lines[i];
    if (tr.hasAttribute("data-ref") && !showRef.checked) return false;
    for (var k = 0; k < filters.length; k++) {
      var want = filters[k].value;
      if (want && tr.getAttribute("data-" + filters[k].getAttribute("data-filter")) !== want) return false;
    }
    var q = search.value.trim().toLowerCase();
    return !q || text[i].indexOf(q) >= 0;
  }
  function order() {
    var idx = lines.map(function (_, i) { return i; });
    if (state.col < 0) return idx;
    var k = keys(state.col), dir = state.dir;
    idx.sort(function (a, b) {
      var x = k[a], y = k[b];
      if (x === null || y === null) { if (x === y) return a - b; return x === null ? 1 : -1; }
      if (x < y) return -dir; if (x > y) return dir; return a - b;
    });
    return idx;
  }
  function closeProvenance() {
    Array.prototype.slice.call(tbody.querySelectorAll("tr.provrow")).forEach(function (r) { r.remove(); });
    Array.prototype.slice.call(tbody.querySelectorAll("button.prov[aria-expanded=true]")).forEach(
      function (b) { b.setAttribute("aria-expanded", "false"); });
  }
  function apply(keepPage) {
    closeProvenance();
    document.body.classList.toggle("with-ref", showRef.checked);
    var idx = order().filter(visible);
    var size = parseInt(pageSize.value, 10) || idx.length || 1;
    var pages = Math.max(1, Math.ceil(idx.length / size));
    if (!keepPage) state.page = 0;
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var start = state.page * size, end = Math.min(idx.length, start + size);
    var shown = {};
    for (var j = start; j < end; j++) shown[idx[j]] = true;
    var frag = document.createDocumentFragment();
    idx.forEach(function (i) { frag.appendChild(lines[i]); });
    lines.forEach(function (tr, i) { if (!(i in shown) && !visible(i)) frag.appendChild(tr); });
    tbody.appendChild(frag);
    lines.forEach(function (tr, i) { tr.hidden = !(i in shown); });
    heads.forEach(function (th, c) {
      th.setAttribute("aria-sort", c !== state.col ? "none" : state.dir > 0 ? "ascending" : "descending");
    });
    status.textContent = idx.length ? ("lines " + (start + 1) + "–" + end + " of " + idx.length +
      " (page " + (state.page + 1) + "/" + pages + ")") : "no line matches the filters";
    status.setAttribute("data-matching", String(idx.length));
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    writeHash();
  }
  function writeHash() {
    var p = [];
    if (state.col >= 0) p.push("sort=" + state.col, "dir=" + (state.dir > 0 ? "asc" : "desc"));
    filters.forEach(function (f) { if (f.value) p.push(f.getAttribute("data-filter") + "=" + encodeURIComponent(f.value)); });
    if (search.value) p.push("q=" + encodeURIComponent(search.value));
    if (showRef.checked !== showRef.defaultChecked) p.push("ref=" + (showRef.checked ? 1 : 0));
    if (pageSize.value !== String(pageSize.querySelector("option[selected]").value)) p.push("size=" + pageSize.value);
    if (state.page) p.push("page=" + (state.page + 1));
    var h = p.length ? "#" + p.join("&") : "";
    if (h !== location.hash && !(h === "" && location.hash === "#")) {
      try { history.replaceState(null, "", h || location.pathname + location.search); } catch (e) { /* some browsers refuse it for local files */ }
    }
  }
  function decode(text) {
    // A malformed %-escape (e.g. "%E0%A4%A") makes decodeURIComponent throw: that pair is ignored, not the page.
    try { return decodeURIComponent(text); } catch (e) { return null; }
  }
  function readHash() {
    var p = Object.create(null);
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return; var i = kv.indexOf("=");
      var k = decode(i < 0 ? kv : kv.slice(0, i)), v = i < 0 ? "" : decode(kv.slice(i + 1));
      if (k !== null && v !== null) p[k] = v;
    });
    if (p.sort !== undefined && heads[+p.sort]) { state.col = +p.sort; state.dir = p.dir === "desc" ? -1 : 1; }
    filters.forEach(function (f) {
      var v = p[f.getAttribute("data-filter")];
      if (v !== undefined && Array.prototype.some.call(f.options, function (o) { return o.value === v; })) f.value = v;
    });
    if (p.q !== undefined) search.value = p.q;
    if (p.ref !== undefined) showRef.checked = p.ref === "1";
    // Compared with each option, never put into a selector: '#size="]' would be a selector syntax error.
    if (p.size !== undefined && Array.prototype.some.call(pageSize.options, function (o) { return o.value === p.size; })) pageSize.value = p.size;
    state.page = p.page ? Math.max(0, (parseInt(p.page, 10) || 1) - 1) : 0;
  }
  function openProvenance(btn) {
    var tr = btn.closest("tr"), open = btn.getAttribute("aria-expanded") === "true";
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("provrow")) next.remove();
    btn.setAttribute("aria-expanded", open ? "false" : "true");
    if (open) return;
    var row = document.createElement("tr"); row.className = "provrow";
    var td = document.createElement("td"); td.colSpan = tr.cells.length;
    (prov.lines[btn.getAttribute("data-id")] || []).forEach(function (run) {
      var box = document.createElement("div"); box.className = "run";
      var h = document.createElement("strong"); h.textContent = run[0] + " (" + run[1] + ")"; box.appendChild(h);
      var pairs = prov.runs[run[0]];
      if (pairs) {
        var dl = document.createElement("dl");
        pairs.forEach(function (kv) {
          var dt = document.createElement("dt"); dt.textContent = kv[0];
          var dd = document.createElement("dd"); dd.textContent = kv[1];
          dl.appendChild(dt); dl.appendChild(dd);
        });
        box.appendChild(dl);
      }
      td.appendChild(box);
    });
    if (!td.childNodes.length) td.textContent = "no runs";
    row.appendChild(td); tr.parentNode.insertBefore(row, tr.nextSibling);
  }
  function showLine(id) {
    // From a plot point: clear what would hide the line, go to its page, highlight it and open its runs.
    filters.forEach(function (f) { f.value = ""; }); search.value = "";
    var target = document.getElementById("r" + id); if (!target) return;
    var size = parseInt(pageSize.value, 10);
    var pos = order().filter(visible).indexOf(lines.indexOf(target));
    state.page = size ? Math.floor(pos / size) : 0;
    apply(true);
    lines.forEach(function (tr) { tr.classList.remove("hl"); });
    target.classList.add("hl");
    openProvenance(target.querySelector("button.prov"));
    target.scrollIntoView({block: "center"});
  }

  heads.forEach(function (th, c) {
    th.querySelector("button").addEventListener("click", function () {
      if (state.col === c) state.dir = -state.dir;
      else { state.col = c; state.dir = th.getAttribute("data-type") === "num" ? -1 : 1; }
      apply(false);
    });
  });
  filters.concat([pageSize, showRef]).forEach(function (el) { el.addEventListener("change", function () { apply(false); }); });
  search.addEventListener("input", function () { apply(false); });
  document.getElementById("prev").addEventListener("click", function () { state.page--; apply(true); });
  document.getElementById("next").addEventListener("click", function () { state.page++; apply(true); });
  document.getElementById("reset").addEventListener("click", function () {
    filters.forEach(function (f) { f.value = ""; }); search.value = ""; showRef.checked = showRef.defaultChecked;
    pageSize.value = pageSize.querySelector("option[selected]").value; state.col = -1; state.dir = 1; apply(false);
  });
  tbody.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.prov"); if (b) openProvenance(b);
  });
  var detail = document.getElementById("pt-detail");
  Array.prototype.slice.call(document.querySelectorAll(".pt")).forEach(function (g) {
    function describe() { if (detail) detail.textContent = g.querySelector("title").textContent.replace(/\n/g, " · "); }
    g.addEventListener("mouseenter", describe); g.addEventListener("focus", describe);
    g.addEventListener("click", function () { describe(); showLine(g.getAttribute("data-id")); });
    g.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { describe(); showLine(g.getAttribute("data-id")); } });
  });
  // The smaller tables: click a header to sort by it (numbers by their leading value), again to reverse.
  Array.prototype.slice.call(document.querySelectorAll("table.sortable")).forEach(function (table) {
    var body = table.tBodies[0], ths = Array.prototype.slice.call(table.tHead.rows[0].cells), last = -1, dir = 1;
    ths.forEach(function (th, c) {
      th.querySelector("button").addEventListener("click", function () {
        dir = last === c ? -dir : 1; last = c;
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (tr) {
          var t = tr.cells[c].textContent, v = parseFloat(t);
          return isNaN(v) ? (t === "\u2014" || t === "" ? null : t) : v;
        };
        rows.map(function (tr, i) { return [key(tr), i, tr]; }).sort(function (a, b) {
          if (a[0] === null || b[0] === null) return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
          if (a[0] < b[0]) return -dir; if (a[0] > b[0]) return dir; return a[1] - b[1];
        }).forEach(function (x) { body.appendChild(x[2]); });
        ths.forEach(function (h, j) { h.setAttribute("aria-sort", j !== c ? "none" : dir > 0 ? "ascending" : "descending"); });
      });
    });
  });
  window.addEventListener("hashchange", function () { readHash(); apply(true); });
  readHash();
  apply(true);
  document.body.setAttribute("data-ready", "1");
})();

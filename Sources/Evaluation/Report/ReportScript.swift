// The report's only script (plain JS, no libraries, no network): the threshold tuner, the
// switch to per-image colour scales, and click to enlarge. The page is complete without it.

enum ReportScript {
    /// Each `.tuner` holds its images as JSON ([{name, type, label, score, row}]); the slider's
    /// value (a score, or its log10 on a log axis), rounded to 4 significant digits (exactly the production threshold before it is
    /// moved), decides as rstpmd does: rejected at score >= threshold. A URL fragment
    /// `#threshold=X` moves every slider to X, as a person would, and `scale=own` (alone or
    /// after `&`) ticks the per-image colour scale boxes (tests and screenshots use both).
    static let source = #"""
    (function () {
      "use strict";
      function percent(count, total) {
        if (!total) return "–";
        var text = (100 * count / total).toFixed(1);
        return (text.slice(-2) === ".0" ? text.slice(0, -2) : text) + "%";
      }
      function escapeHTML(text) {
        return String(text).replace(/[&<>"']/g, function (c) {
          return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
        });
      }
      function setCount(element, count, total, text) {
        element.setAttribute("data-count", String(count));
        element.setAttribute("data-total", String(total));
        element.textContent = text;
      }
      var requested = /(?:^#|&)threshold=([0-9.eE+-]+)/.exec(location.hash);

      document.querySelectorAll(".tuner").forEach(function (tuner) {
        var images = JSON.parse(tuner.querySelector("script.scores").textContent);
        var slider = tuner.querySelector(".slider");
        var production = tuner.getAttribute("data-production") === "" ? null : Number(tuner.getAttribute("data-production"));
        var category = tuner.id.replace("tuner-", "");
        // The slider moves along the axis: the score itself, or its log10 (data-axis="log").
        var logarithmic = tuner.getAttribute("data-axis") === "log";
        function toAxis(score) { return logarithmic ? Math.log10(Math.max(score, 1e-30)) : score; }
        function toScore(value) { return logarithmic ? Math.pow(10, value) : value; }
        var bottom = Number(slider.min), top = Number(slider.max);
        function position(score) { return (toAxis(score) - bottom) / (top - bottom) * 1000; }
        var current = production !== null ? production : Number(toScore(Number(slider.value)).toPrecision(4));

        var bins = 60, good = [], bad = [], i;
        for (i = 0; i < bins; i++) { good.push(0); bad.push(0); }
        images.forEach(function (image) {
          var bin = Math.min(bins - 1, Math.max(0, Math.floor(position(image.score) / 1000 * bins)));
          (image.label ? bad : good)[bin] += 1;
        });
        var peak = Math.max.apply(null, good.concat(bad).concat([1]));
        var bars = "";
        for (i = 0; i < bins; i++) {
          var x = i * 1000 / bins, w = 1000 / bins - 1;
          if (good[i]) bars += '<rect x="' + x + '" width="' + w + '" y="' + (150 - 140 * good[i] / peak) + '" height="' + (140 * good[i] / peak) + '" fill="#0072b2" fill-opacity="0.6"></rect>';
          if (bad[i]) bars += '<rect x="' + x + '" width="' + w + '" y="' + (150 - 140 * bad[i] / peak) + '" height="' + (140 * bad[i] / peak) + '" fill="#e69f00" fill-opacity="0.6"></rect>';
        }
        bars += '<line x1="0" x2="1000" y1="150" y2="150" stroke="#888"></line>';
        if (production !== null) {
          var px = position(production);
          bars += '<line x1="' + px + '" x2="' + px + '" y1="0" y2="160" stroke="#555" stroke-dasharray="6 4" stroke-width="2"></line>';
        }
        bars += '<line class="cursor" x1="0" x2="0" y1="0" y2="160" stroke="#d00" stroke-width="3"></line>';
        var svg = tuner.querySelector("svg.histogram");
        svg.innerHTML = bars;
        var cursor = svg.querySelector(".cursor");

        function update() {
          var t = current;
          tuner.querySelector(".value").textContent = String(t);
          var goods = images.filter(function (image) { return !image.label; });
          var defects = images.filter(function (image) { return image.label; });
          var rejected = goods.filter(function (image) { return image.score >= t; });
          var escaped = defects.filter(function (image) { return image.score < t; });
          setCount(tuner.querySelector(".rejects"), rejected.length, goods.length,
                   percent(rejected.length, goods.length) + " of good parts rejected (" + rejected.length + " of " + goods.length + ")");
          setCount(tuner.querySelector(".escapes"), escaped.length, defects.length,
                   percent(escaped.length, defects.length) + " of defects escape (" + escaped.length + " of " + defects.length + ")");
          tuner.querySelector(".config").textContent = "    threshold: " + t;
          cursor.setAttribute("x1", String(position(t)));
          cursor.setAttribute("x2", String(position(t)));

          var types = {};
          images.forEach(function (image) {
            var row = types[image.type] || (types[image.type] = { images: 0, rejected: 0, label: image.label });
            row.images += 1;
            if (image.score >= t) row.rejected += 1;
          });
          var table = "<tr><th></th><th>images</th><th>passed (ok)</th><th>rejected (defect)</th><th>wrong</th></tr>";
          Object.keys(types).sort(function (a, b) { return a === "good" ? -1 : b === "good" ? 1 : a < b ? -1 : a > b ? 1 : 0; })
            .forEach(function (name) {
              var row = types[name], wrong = row.label ? row.images - row.rejected : row.rejected;
              table += '<tr data-type="' + escapeHTML(name) + '" data-rejected="' + row.rejected + '"><td>' + escapeHTML(name) + "</td><td>" + row.images +
                "</td><td>" + (row.images - row.rejected) + "</td><td>" + row.rejected + "</td><td>" + wrong + " (" + percent(wrong, row.images) + ")</td></tr>";
            });
          tuner.querySelector(".types").innerHTML = table;

          function chips(list) {
            return list.slice(0, 200).map(function (image) {
              var text = escapeHTML(image.name) + " " + image.score.toPrecision(4);
              return image.row === null || image.row === undefined ? "<span>" + text + "</span>"
                : '<a href="#row-' + category + "-" + image.row + '">' + text + "</a>";
            }).join("") + (list.length > 200 ? "<span>and " + (list.length - 200) + " more</span>" : "");
          }
          rejected.sort(function (a, b) { return b.score - a.score; });
          escaped.sort(function (a, b) { return a.score - b.score; });
          tuner.querySelector(".affected").innerHTML =
            "<p><b>Good parts rejected (" + rejected.length + "):</b> " + (chips(rejected) || "none") + "</p>" +
            "<p><b>Defects that escape (" + escaped.length + "):</b> " + (chips(escaped) || "none") + "</p>";
        }
        slider.addEventListener("input", function () {
          current = Number(toScore(Number(slider.value)).toPrecision(4));
          update();
        });
        tuner.querySelector(".reset").addEventListener("click", function () {
          if (production === null) return;
          slider.value = String(toAxis(production));
          current = production;
          update();
        });
        update();
        if (requested) {
          slider.value = String(toAxis(Number(requested[1])));
          slider.dispatchEvent(new Event("input"));
        }
      });

      document.querySelectorAll("input.own-scale").forEach(function (box) {
        box.addEventListener("change", function () {
          var key = box.checked ? "data-own" : "data-category";
          var rows = document.getElementById("rows-" + box.getAttribute("data-category"));
          rows.querySelectorAll("img.heat").forEach(function (img) {
            var other = img.getAttribute("data-other");
            img.setAttribute("data-other", img.getAttribute("src"));
            img.setAttribute("src", other);
          });
          rows.querySelectorAll(".scalenote").forEach(function (note) { note.textContent = note.getAttribute(key); });
          var ticks = document.querySelector("#colorbar-" + box.getAttribute("data-category") + " .ticks");
          ticks.getAttribute(key).split("|").forEach(function (text, index) { ticks.children[index].textContent = text; });
        });
      });

      if (/(?:^#|&)scale=own(?:&|$)/.test(location.hash)) {
        document.querySelectorAll("input.own-scale").forEach(function (box) {
          box.checked = true;
          box.dispatchEvent(new Event("change"));
        });
      }

      var lightbox = document.getElementById("lightbox");
      document.querySelectorAll("table.rows img").forEach(function (img) {
        img.addEventListener("click", function () {
          lightbox.querySelector("img").src = img.src;
          lightbox.hidden = false;
        });
      });
      lightbox.addEventListener("click", function () { lightbox.hidden = true; });
      document.addEventListener("keydown", function (event) { if (event.key === "Escape") lightbox.hidden = true; });
    })();
    """#
}

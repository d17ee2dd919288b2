/* audioclf player: a spectrogram with a playhead that follows an <audio> element, and
 * the prediction timeline (one heat strip per class) under it on the same time axis.
 * Clicking the spectrogram or the timeline seeks. No dependencies, works offline.
 *
 * Used by the HTML report (data embedded in the page) and by the service's page (data
 * from POST /timeline); both pass the same JSON shape, see audioclf.reporting.payload:
 *   { duration, label_names, edges (frames+1 s), scores (frames x classes),
 *     clip_scores, spectrogram (image URL or null),
 *     spectrogram_axis ({ticks: [[0-1 from the bottom, label]], db: [lo, hi], colours} or null) }
 */
(function () {
  "use strict";

  var ROW_HEIGHT = 18; // CSS pixels per class strip; the labels column uses the same
  var AXIS_HEIGHT = 22;
  // viridis, sampled: a perceptually even scale that reads in greyscale too
  var STOPS = [
    [0.0, [68, 1, 84]], [0.25, [59, 82, 139]], [0.5, [33, 145, 140]],
    [0.75, [94, 201, 98]], [1.0, [253, 231, 37]]
  ];

  function colour(v) {
    v = Math.min(1, Math.max(0, v || 0));
    for (var i = 1; i < STOPS.length; i++) {
      if (v <= STOPS[i][0]) {
        var a = STOPS[i - 1], b = STOPS[i];
        var f = (v - a[0]) / (b[0] - a[0]);
        var c = a[1].map(function (x, k) { return Math.round(x + f * (b[1][k] - x)); });
        return "rgb(" + c.join(",") + ")";
      }
    }
    return "rgb(253,231,37)";
  }

  function el(tag, cls, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  function clock(t) {
    t = Math.max(0, t || 0);
    var m = Math.floor(t / 60), s = t - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  // Indices of the k classes with the highest score in any frame, best first.
  function topClasses(scores, k) {
    var n = scores.length ? scores[0].length : 0;
    var peak = [];
    for (var c = 0; c < n; c++) {
      var m = 0;
      for (var f = 0; f < scores.length; f++) if (scores[f][c] > m) m = scores[f][c];
      peak.push([m, c]);
    }
    peak.sort(function (a, b) { return b[0] - a[0] || a[1] - b[1]; });
    return peak.slice(0, Math.max(1, k)).map(function (p) { return p[1]; });
  }

  // Draw a canvas at device resolution; returns its 2-D context scaled to CSS pixels.
  function sizeCanvas(canvas, cssHeight) {
    var ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, canvas.clientWidth);
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx: ctx, width: width, height: cssHeight };
  }

  function tickStep(duration, width) {
    var steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
    var most = Math.max(2, Math.floor(width / 70));
    for (var i = 0; i < steps.length; i++) if (duration / steps[i] <= most) return steps[i];
    return steps[steps.length - 1];
  }

  /* Build the player inside `root`.
   *   audio: an <audio> element already in the page (its src set by the caller)
   *   data:  the timeline payload (see top of file)
   *   opts:  { rows: how many classes to show (default 6) }
   * Returns { seek(seconds), redraw(), destroy() }. */
  function mount(root, audio, data, opts) {
    opts = opts || {};
    root.innerHTML = "";
    var duration = Number(data.duration) || 0;
    var shown = topClasses(data.scores || [], opts.rows || 6);

    var wrap = el("div", "acp", root);
    var readout = el("div", "acp-readout", wrap);
    var timeText = el("span", "acp-time", readout);
    timeText.title = "where the audio is / its length";
    var hoverText = el("span", "acp-hover", readout);
    hoverText.title = "the time under the mouse pointer (and the score under it on a strip)";
    var grid = el("div", "acp-grid", wrap);
    var labels = el("div", "acp-labels", grid);
    var specLabel = el("div", "acp-speclabel", labels);
    var axisInfo = data.spectrogram_axis || null;
    if (data.spectrogram && axisInfo && axisInfo.ticks && axisInfo.ticks.length) {
      // frequency axis beside the image: the image is stretched to the label column's height
      specLabel.className = "acp-speclabel acp-freqaxis";
      el("div", "acp-freqtitle", specLabel).textContent = "frequency";
      axisInfo.ticks.forEach(function (tick) {
        var t = el("div", "acp-freqtick", specLabel);
        t.style.bottom = (100 * tick[0]).toFixed(2) + "%";
        t.textContent = tick[1];
      });
    } else {
      specLabel.textContent = "spectrogram";
    }
    shown.forEach(function (c) {
      var l = el("div", "acp-rowlabel", labels);
      l.textContent = data.label_names[c];
      l.title = data.label_names[c];
      l.style.height = ROW_HEIGHT + "px";
    });
    var plot = el("div", "acp-plot", grid);
    var spec;
    if (data.spectrogram) {
      spec = el("img", "acp-spec", plot);
      spec.alt = "spectrogram";
      spec.src = data.spectrogram;
    } else {
      spec = el("div", "acp-spec acp-nospec", plot);
      spec.textContent = "no spectrogram";
    }
    var strips = el("canvas", "acp-timeline", plot);
    strips.style.height = shown.length * ROW_HEIGHT + "px";
    var axis = el("canvas", "acp-axis", plot);
    axis.style.height = AXIS_HEIGHT + "px";
    var head = el("div", "acp-playhead", plot);
    head.style.bottom = AXIS_HEIGHT + "px";

    // colour keys: what the spectrogram's and the strips' colours mean
    var legend = el("div", "acp-legend", wrap);
    function colourKey(title, colours, low, high, cls) {
      var item = el("div", "acp-key " + cls, legend);
      el("span", "acp-keytitle", item).textContent = title;
      el("span", "acp-keyend", item).textContent = low;
      var bar = el("span", "acp-keybar", item);
      bar.style.background = "linear-gradient(to right, " + colours.join(", ") + ")";
      el("span", "acp-keyend", item).textContent = high;
    }
    if (data.spectrogram && axisInfo && axisInfo.colours) {
      colourKey("spectrogram level", axisInfo.colours, axisInfo.db[0].toFixed(0) + " dB",
                axisInfo.db[1].toFixed(0) + " dB", "acp-key-spec");
    }
    var scoreColours = [];
    for (var k = 0; k <= 8; k++) scoreColours.push(colour(k / 8));
    colourKey("class score (strips)", scoreColours, "0", "1", "acp-key-score");

    function drawStrips() {
      var s = sizeCanvas(strips, shown.length * ROW_HEIGHT);
      var edges = data.edges || [];
      s.ctx.clearRect(0, 0, s.width, s.height);
      shown.forEach(function (c, r) {
        for (var f = 0; f + 1 < edges.length; f++) {
          var x0 = edges[f] / duration * s.width, x1 = edges[f + 1] / duration * s.width;
          s.ctx.fillStyle = colour(data.scores[f][c]);
          // +0.5 px: neighbouring cells overlap instead of leaving hairline gaps
          s.ctx.fillRect(x0, r * ROW_HEIGHT, Math.max(1, x1 - x0) + 0.5, ROW_HEIGHT - 1);
        }
      });
    }

    function drawAxis() {
      var s = sizeCanvas(axis, AXIS_HEIGHT);
      var ctx = s.ctx;
      ctx.clearRect(0, 0, s.width, s.height);
      ctx.fillStyle = ctx.strokeStyle = "#555";
      ctx.font = "11px sans-serif";
      ctx.textBaseline = "top";
      if (!(duration > 0)) return;
      var step = tickStep(duration, s.width);
      for (var t = 0; t <= duration + 1e-9; t += step) {
        var x = Math.round(t / duration * (s.width - 1)) + 0.5;
        ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, 5); ctx.stroke();
        var text = step >= 60 ? clock(t).replace(/\.0$/, "") : (step < 1 ? t.toFixed(1) : t.toFixed(0)) + " s";
        var w = ctx.measureText(text).width;
        ctx.fillText(text, Math.min(Math.max(0, x - w / 2), s.width - w), 7);
      }
    }

    function fraction(event) {
      var rect = plot.getBoundingClientRect();
      return Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    }

    function update() {
      var t = audio.currentTime || 0;
      var f = duration > 0 ? Math.min(1, t / duration) : 0;
      head.style.left = (f * 100).toFixed(3) + "%";
      timeText.textContent = "playhead " + clock(t) + " / " + clock(duration);
    }

    var raf = 0;
    function tick() {
      update();
      raf = !audio.paused && !audio.ended ? window.requestAnimationFrame(tick) : 0;
    }
    function onPlay() { if (!raf) raf = window.requestAnimationFrame(tick); }

    function seek(seconds) {
      var limit = isFinite(audio.duration) ? audio.duration : duration;
      audio.currentTime = Math.min(Math.max(0, seconds), limit);
      update();
    }

    function onClick(event) { seek(fraction(event) * duration); }

    function onHover(event) {
      var t = fraction(event) * duration;
      var text = "pointer " + clock(t);
      if (event.currentTarget === strips) {
        var rect = strips.getBoundingClientRect();
        var row = Math.floor((event.clientY - rect.top) / ROW_HEIGHT);
        var edges = data.edges || [];
        var frame = 0;
        while (frame + 2 < edges.length && edges[frame + 1] <= t) frame++;
        if (row >= 0 && row < shown.length && data.scores.length) {
          text += " · " + data.label_names[shown[row]] + " score " + data.scores[frame][shown[row]].toFixed(3);
        }
      }
      hoverText.textContent = text;
    }

    function redraw() { drawStrips(); drawAxis(); update(); }

    [spec, strips].forEach(function (target) {
      target.addEventListener("click", onClick);
      target.addEventListener("mousemove", onHover);
      target.addEventListener("mouseleave", function () { hoverText.textContent = ""; });
    });
    audio.addEventListener("play", onPlay);
    ["timeupdate", "seeked", "loadedmetadata", "pause", "ended"].forEach(function (name) {
      audio.addEventListener(name, update);
    });
    window.addEventListener("resize", redraw);
    redraw();

    return {
      seek: seek,
      redraw: redraw,
      destroy: function () {
        if (raf) window.cancelAnimationFrame(raf);
        audio.removeEventListener("play", onPlay);
        ["timeupdate", "seeked", "loadedmetadata", "pause", "ended"].forEach(function (name) {
          audio.removeEventListener(name, update);
        });
        window.removeEventListener("resize", redraw);
        root.innerHTML = "";
      }
    };
  }

  window.AudioclfPlayer = { mount: mount, topClasses: topClasses, colour: colour };
})();

// Draw each new Plotly figure once, and only when it is on screen.
//
// Gradio's Plot component mounts a fresh Plotly div for every new figure (a `{#key}` block), but the outgoing div
// sees the new figure first and draws it too, just before it is removed: every update draws the figure twice in
// full. Each drawing then calls `Plotly.Plots.resize`, which 100 ms later relayouts the figure to its container's
// size again: a third and fourth full redraw (axes, labels, every text) of a figure whose size has not changed. On a
// laptop without a GPU a drawing is 15-60 ms of main thread, and a long tab that updates six figures at a click, most
// of them below the fold, pays for all of them before the one in view is done.
//
// So a drawing waits one microtask, by which time the outgoing div has left the page and is skipped; a figure out of
// view (beyond a margin) waits until it scrolls near, or its tab is shown, as the page's lazy images do, and a newer
// figure for the same place replaces one still waiting; and a resize waits for the drawing and is skipped when the
// figure is already laid out at its container's size, while one that finds the container resized (a window resize)
// redraws as before. Plotly is loaded lazily, so the patch is applied when Gradio's Plot component publishes it as
// `window.Plotly`; if Plotly's API differs, nothing is patched and the page works as Gradio ships it
// (`window.labPlotlyOnce` then stays undefined, which a browser test checks).
let plotly;
const state = {dropped: 0, drawn: 0, deferred: 0, skipped: 0, resized: 0};
const drawing = new WeakMap();  // div -> its pending drawing
const waiting = new WeakMap();  // div out of view -> {draw, cancel} for its latest figure
const MARGIN = 300;  // px above and below the viewport within which a figure is drawn at once

const div = (gd) => (typeof gd === "string" ? document.getElementById(gd) : gd);

const nearView = (el) => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.bottom > -MARGIN && box.top < window.innerHeight + MARGIN;
};

const whenNear = (el, job) => {  // run job() once `el` comes within MARGIN of the viewport
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) {
      observer.disconnect();
      waiting.delete(el);
      job.draw();
    }
  }, {rootMargin: `${MARGIN}px 0px`});
  waiting.set(el, {draw: job.draw, cancel: () => { observer.disconnect(); job.cancel(); }});
  observer.observe(el);
};

const patch = (Plotly) => {
  const plots = Plotly && Plotly.Plots;
  if (!plots || typeof plots.resize !== "function" || typeof Plotly.react !== "function" || Plotly.react.patched) {
    return;
  }
  const react = Plotly.react, resize = plots.resize;
  Plotly.react = function (gd, ...rest) {
    const target = div(gd);
    const drawn = new Promise((resolve, reject) => queueMicrotask(() => {  // after the component swapped its div
      const earlier = target && waiting.get(target);
      if (earlier) {  // a figure that never came into view: this one replaces it
        waiting.delete(target);
        earlier.cancel();
      }
      if (target && !target.isConnected) {
        state.dropped += 1;
        resolve(target);
        return;
      }
      const draw = () => {
        state.drawn += 1;
        Promise.resolve(react.call(this, gd, ...rest)).then(resolve, reject);
      };
      if (!target || nearView(target)) {
        draw();
      } else {
        state.deferred += 1;
        whenNear(target, {draw, cancel: () => resolve(target)});
      }
    }));
    if (target) drawing.set(target, drawn);
    return drawn;
  };
  plots.resize = function (gd, ...rest) {
    const target = div(gd);
    return Promise.resolve(target && drawing.get(target)).then(() => {
      if (target && !target.isConnected) return target;  // a div that was dropped: nothing to fit
      const laid = target && target._fullLayout;
      const style = target && window.getComputedStyle(target);  // what Plotly's autosize reads, to within a pixel
      if (laid && target.layout && target.layout.autosize && Math.abs(parseFloat(style.width) - laid.width) <= 1
          && Math.abs(parseFloat(style.height) - laid.height) <= 1) {
        state.skipped += 1;
        return target;
      }
      state.resized += 1;
      return resize.call(this, gd, ...rest);
    });
  };
  Plotly.react.patched = true;
  window.labPlotlyOnce = state;
};

Object.defineProperty(window, "Plotly", {
  configurable: true,
  get: () => plotly,
  set: (value) => {
    plotly = value;
    try {
      patch(value);
    } catch (error) {
      console.warn("Plotly patch not applied:", error);
    }
  },
});

// Draw each Plotly figure once, not twice.
//
// Gradio's Plot component draws a new figure with `Plotly.react` (autosized to its container) and then calls
// `Plotly.Plots.resize`, which 100 ms later relayouts the figure to the container's size again: a second full
// redraw (axes, labels, every text) of a figure whose size has not changed. On a laptop without a GPU that is
// 50-150 ms of main thread per figure, and it lands after the figure looks done.
//
// So a resize is skipped when the figure is already laid out at its container's size; one that finds the container
// resized (a window resize, a tab shown) redraws as before. Plotly is loaded lazily, so the patch is applied when
// Gradio's Plot component publishes it as `window.Plotly`; if Plotly's API differs, nothing is patched and the page
// works as Gradio ships it (`window.labPlotlyResize` then stays undefined, which a browser test checks).
let plotly;
const state = {skipped: 0, resized: 0};

const patch = (Plotly) => {
  const plots = Plotly && Plotly.Plots;
  if (!plots || typeof plots.resize !== "function" || plots.resize.patched) return;
  const resize = plots.resize;
  plots.resize = function (gd, ...rest) {
    const div = typeof gd === "string" ? document.getElementById(gd) : gd;
    const laid = div && div._fullLayout;
    const style = div && window.getComputedStyle(div);  // what Plotly's autosize reads, to within a pixel as it does
    if (laid && div.layout && div.layout.autosize && Math.abs(parseFloat(style.width) - laid.width) <= 1
        && Math.abs(parseFloat(style.height) - laid.height) <= 1) {
      state.skipped += 1;
      return Promise.resolve(div);
    }
    state.resized += 1;
    return resize.call(this, gd, ...rest);
  };
  plots.resize.patched = true;
  window.labPlotlyResize = state;
};

Object.defineProperty(window, "Plotly", {
  configurable: true,
  get: () => plotly,
  set: (value) => {
    plotly = value;
    try {
      patch(value);
    } catch (error) {
      console.warn("Plotly resize patch not applied:", error);
    }
  },
});

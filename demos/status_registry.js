// Keep Gradio's loading-status registry to the events in flight.
//
// Gradio 6's frontend keeps every component that ever carried a loading status (each event's outputs, and its
// inputs once it completes) in one registry, and re-sends the whole registry to the component tree on every status
// message of every event: pending, queued, started, each streamed yield, complete. Each re-send looks its component
// up by a depth-first search of the whole layout, so with this app's ~430 blocks one slider move cost 60-200 ms of
// frozen main thread before its request was even sent, and each streamed caption token as much again.
//
// A finished status has nothing left to say once it has been delivered, so each entry that is complete or failed is
// dropped after the message that delivered it (the delivery is synchronous, right after `update`; the drop waits a
// macrotask). Entries of events still in flight stay, so spinners, queue positions and progress bars work as before.
// The class is found by its methods rather than its minified name; if Gradio changes it, nothing is patched and the
// page works as Gradio ships it (`window.labStatusRegistry` then stays undefined, which a browser test checks).
const patch = async (url) => {
  const module = await import(url);
  const LoadingStatus = Object.values(module).find((value) => typeof value === "function" && value.prototype
    && ["register", "update", "resolve_args"].every((name) => typeof value.prototype[name] === "function"));
  if (!LoadingStatus || LoadingStatus.prototype.update.patched) return;
  const update = LoadingStatus.prototype.update;
  const state = {size: 0, dropped: 0};
  LoadingStatus.prototype.update = function (status) {
    update.call(this, status);
    state.size = Object.keys(this.current).length;
    const finished = Object.entries(this.current).filter(([, s]) => s.status === "complete" || s.status === "error");
    setTimeout(() => {
      for (const [id, s] of finished) {
        if (this.current[id] === s) {
          delete this.current[id];
          state.dropped += 1;
        }
      }
      state.size = Object.keys(this.current).length;
    });
  };
  LoadingStatus.prototype.update.patched = true;
  window.labStatusRegistry = state;
};

new PerformanceObserver((list, observer) => {
  const entry = list.getEntries().find((e) => /\/statustracker-[^/]*\.js$/.test(e.name));
  if (entry) {
    observer.disconnect();
    patch(entry.name);
  }
}).observe({type: "resource", buffered: true});

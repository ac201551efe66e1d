/**
 * Resolves once the browser has painted what the caller just changed in the DOM.
 *
 * A DOM call returns before anything is on screen: style, layout and paint run in the next frame.
 * The first requestAnimationFrame callback runs before that frame's paint, the second one after it,
 * so a double rAF ends a measurement when the user could see the change. Outside a browser (node's
 * test runner) or in a hidden tab, where frames do not run, it resolves on the next macrotask.
 */
export function painted(): Promise<void> {
  const raf = globalThis.requestAnimationFrame as ((cb: () => void) => number) | undefined;
  const hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
  if (raf === undefined || hidden) {
    return new Promise((resolve) => setTimeout(resolve, 0));
  }
  return new Promise((resolve) => {
    raf(() => {
      raf(() => resolve());
    });
  });
}

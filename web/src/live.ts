// One way to keep a list live for every screen that watches (agenda, alerts, inbox).
//
// A watch ends when the server could not follow every change (a database restart, a watcher too
// far behind), when a service restarts and when the network drops. The screen then watches again
// after a pause (1 s, doubling up to 30 s) and, once the new watch is ready, loads its list again:
// what changed in between is in the list, and nothing is missed.

import { useEffect, useState } from "preact/hooks";

/** How long to wait before watching again: from the first pause, doubled each time, to the last. */
const FIRST_PAUSE_MS = 1_000;
const LAST_PAUSE_MS = 30_000;

/**
 * Runs `watch` (which calls `ready` on the watch's first message and returns when the stream ends)
 * until the screen goes away, calling `reload` each time a watch after the first is ready. Returns
 * whether a watch is ready now, for the screen's "live" mark.
 */
export function useLiveWatch(
  watch: (signal: AbortSignal, ready: () => void) => Promise<void>,
  reload: () => void,
  deps: unknown[],
): boolean {
  const [live, setLive] = useState(false);
  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      let pause = FIRST_PAUSE_MS;
      let watched = false;
      while (!abort.signal.aborted) {
        try {
          await watch(abort.signal, () => {
            setLive(true);
            pause = FIRST_PAUSE_MS;
            if (watched) reload();
            watched = true;
          });
        } catch {
          // Ended with an error: watched again below, like a stream that ended cleanly.
        }
        if (abort.signal.aborted) return;
        setLive(false);
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, LAST_PAUSE_MS);
      }
    })();
    return () => abort.abort();
  }, deps);
  return live;
}

// Shared pieces of every screen: loading and error states, progress, and the data hook.

import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { problem, type Problem } from "./errors";

export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const shown: Problem = problem(error);
  return (
    <div class="error" role="alert">
      <p>{shown.message}</p>
      {shown.detail && <p class="detail">Détail technique : {shown.detail}</p>}
    </div>
  );
}

export function Loading({ label = "Chargement…" }: { label?: string }) {
  return (
    <p class="loading" role="status">
      {label}
    </p>
  );
}

export function Progress({ value, max, label }: { value: number; max: number; label: string }) {
  const percent = max > 0 ? Math.round((value / max) * 100) : 0;
  return (
    <div class="progress">
      <progress value={value} max={max} aria-label={label} />
      <span>{percent} %</span>
    </div>
  );
}

export function Page({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} — Télésanté`;
    // Move focus to the new screen's title, so keyboard and screen-reader users know where they are.
    heading.current?.focus();
  }, [title]);
  return (
    <section class="page">
      <header class="page-header">
        <h1 tabIndex={-1} ref={heading}>
          {title}
        </h1>
        {actions && <div class="actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export interface Loaded<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change; keeps the last data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    setState((previous) => ({ data: previous.data, loading: true }));
    load().then(
      (data) => current && setState({ data, loading: false }),
      (error) => current && setState({ error, loading: false }),
    );
    return () => {
      current = false;
    };
    // `deps` are the caller's: the loader itself changes at every render.
  }, [...deps, round]);
  const reload = useCallback(() => setRound((n) => n + 1), []);
  return { ...state, reload };
}

/** A new random id (idempotency keys, upload sessions). */
export function newId(): string {
  return crypto.randomUUID();
}

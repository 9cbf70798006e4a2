/**
 * A storage's "behind" signal (XmppStorage.onPressure): listeners hear `true` when too many calls wait for the
 * backend, `false` once it caught up. Shared by the SQLite thread's storage and PostgreSQL's. @internal
 */
export class PressureSignal {
  readonly #listeners = new Set<(behind: boolean) => void>();
  #behind = false;

  get behind(): boolean {
    return this.#behind;
  }

  /** Whether anyone listens (else the caller bounds what waits some other way). */
  get heard(): boolean {
    return this.#listeners.size > 0;
  }

  listen(listener: (behind: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Say it, once per change. */
  tell(behind: boolean): void {
    if (behind === this.#behind) return;
    this.#behind = behind;
    for (const listener of [...this.#listeners]) {
      try {
        listener(behind);
      } catch {
        // A listener that throws: the others still hear.
      }
    }
  }
}

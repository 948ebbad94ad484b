// Undo / redo over snapshots of the editable state ({spec, pos}). Typing in one field makes
// one step, not one per key: a change with the same `coalesce` key as the last one joins it.

export class History {
  constructor(limit = 200) { this.past = []; this.future = []; this.limit = limit; this.lastKey = null; }

  /** Record ``before`` (the state about to be replaced). */
  push(before, coalesce = null) {
    if (coalesce && coalesce === this.lastKey) return;
    this.past.push(before);
    if (this.past.length > this.limit) this.past.shift();
    this.future = [];
    this.lastKey = coalesce;
  }

  undo(current) {
    if (!this.past.length) return null;
    this.future.push(current); this.lastKey = null;
    return this.past.pop();
  }

  redo(current) {
    if (!this.future.length) return null;
    this.past.push(current); this.lastKey = null;
    return this.future.pop();
  }

  /** A later change starts a new step even with the same key. */
  seal() { this.lastKey = null; }
}

/**
 * The events on the wire of one confirm channel, by delivery tag: RabbitMQ numbers a channel's
 * publishes from 1, and its 'ack' / 'nack' name a tag, or every tag up to it (`multiple`). Kept
 * here rather than as a callback per publish: one slot per event instead of a closure.
 */
export class OnWire<T> {
  private slots: (T | undefined)[] = [];
  private head = 0;
  /** The delivery tag of slots[0]. */
  private base = 1;

  push(p: T): void {
    this.slots.push(p);
  }

  /** Calls `each` for the events `tag` confirms (or refuses), in tag order. */
  take(tag: number, multiple: boolean, each: (p: T) => void): void {
    const slots = this.slots;
    const i = tag - this.base;
    if (!Number.isSafeInteger(i) || i < this.head || i >= slots.length) return;
    if (multiple) {
      const until = i;
      // Stops if the channel closed while `each` ran: drain() took the rest.
      for (let j = this.head; j <= until && this.slots === slots; j++) {
        const p = slots[j];
        slots[j] = undefined;
        if (p) each(p);
      }
    } else {
      const p = slots[i];
      slots[i] = undefined;
      if (p) each(p);
    }
    if (this.slots !== slots) return;
    while (this.head < slots.length && slots[this.head] === undefined) this.head++;
    // `each` may have published more (appended): compact only now, from the front.
    if (this.head === slots.length) {
      this.base += this.head;
      slots.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= slots.length) {
      this.base += this.head;
      this.slots = slots.slice(this.head);
      this.head = 0;
    }
  }

  /** The events never confirmed, in tag order; empties the list. */
  drain(): T[] {
    const left = this.slots.slice(this.head).filter((p): p is T => p !== undefined);
    this.base += this.slots.length;
    this.slots = [];
    this.head = 0;
    return left;
  }
}

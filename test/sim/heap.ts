// The simulator's event queue: a binary min-heap on (time, insertion order), so events at the same
// virtual time run in the order they were scheduled and a run never depends on heap internals.

export interface Timed {
  readonly at: number
}

interface Entry<T> {
  readonly at: number
  readonly seq: number
  readonly item: T
}

export class EventQueue<T extends Timed> {
  private readonly items: Entry<T>[] = []
  private seq = 0

  get size(): number {
    return this.items.length
  }

  push(item: T): void {
    const xs = this.items
    xs.push({ at: item.at, seq: this.seq++, item })
    let i = xs.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(xs[i]!, xs[p]!)) break
      swap(xs, i, p)
      i = p
    }
  }

  peek(): T | undefined {
    return this.items[0]?.item
  }

  pop(): T | undefined {
    const xs = this.items
    const top = xs[0]
    if (top === undefined) return undefined
    const last = xs.pop()!
    if (xs.length > 0) {
      xs[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < xs.length && before(xs[l]!, xs[m]!)) m = l
        if (r < xs.length && before(xs[r]!, xs[m]!)) m = r
        if (m === i) break
        swap(xs, i, m)
        i = m
      }
    }
    return top.item
  }
}

function before<T>(x: Entry<T>, y: Entry<T>): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq)
}

function swap<T>(xs: T[], i: number, j: number): void {
  const t = xs[i]!
  xs[i] = xs[j]!
  xs[j] = t
}

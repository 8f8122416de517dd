// Output of the scheduler benchmark: a table with one column per farm size, and the hook for the
// figures this benchmark cannot produce (they need a real loopback farm, see loopbackFigures).

/** Figures measured on a real farm of nodes on 127.0.0.1, not in the simulator. */
export interface LoopbackFigures {
  readonly submit_to_start_ms: number | null
  readonly task_gap_ms_p50: number | null
  readonly task_gap_ms_p95: number | null
}

/**
 * Real-farm figures: submit-to-start latency and the gap between one task's end and the next task's
 * start on a busy host, measured on three real nodes on 127.0.0.1 (bench/sched-loopback.ts): the
 * simulator's clock is virtual and cannot give them.
 */
export async function loopbackFigures(quick: boolean): Promise<LoopbackFigures> {
  const { measureLoopback } = await import('./sched-loopback.ts')
  const r = await measureLoopback(quick)
  return {
    submit_to_start_ms: r.submit_to_start_ms,
    task_gap_ms_p50: r.task_gap_ms_p50,
    task_gap_ms_p95: r.task_gap_ms_p95,
  }
}

export type Cell = string | number | null | undefined

/** Rows of cells under one header per column; `section` rows span the table. */
export class Grid {
  private readonly rows: ({ label: string; cells: Cell[]; note: string } | { section: string })[] = []

  constructor(private readonly header: readonly string[]) {}

  section(title: string): void {
    this.rows.push({ section: title })
  }

  row(label: string, cells: readonly Cell[], note = ''): void {
    this.rows.push({ label, cells: [...cells], note })
  }

  render(): string {
    const text = (c: Cell) => (c === null || c === undefined ? '-' : typeof c === 'number' ? fmt(c) : c)
    const body = this.rows.map((r) => ('section' in r ? r : { ...r, cells: r.cells.map(text) }))
    const labelW = Math.max(8, ...body.map((r) => ('label' in r ? r.label.length + 2 : 0)))
    const colW = this.header.map((h, i) =>
      Math.max(h.length, ...body.map((r) => ('cells' in r ? (r.cells[i] ?? '').length : 0))),
    )
    const line = (label: string, cells: readonly string[], note: string) =>
      `${label.padEnd(labelW)}  ${cells.map((c, i) => c.padStart(colW[i]!)).join('  ')}  ${note}`.trimEnd()
    const out = [line('', this.header, ''), '-'.repeat(labelW + colW.reduce((a, w) => a + w + 2, 0))]
    for (const r of body) {
      if ('section' in r) out.push('', `${r.section}`)
      else out.push(line(`  ${r.label}`, r.cells as string[], r.note))
    }
    return out.join('\n')
  }
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? '-' : 'inf'
  if (Number.isInteger(x)) return x.toLocaleString('en-US')
  if (Math.abs(x) >= 100) return x.toFixed(0)
  if (Math.abs(x) >= 10) return x.toFixed(1)
  return x.toFixed(3)
}

export function round(x: number, digits = 3): number | null {
  if (!Number.isFinite(x)) return null
  const f = 10 ** digits
  return Math.round(x * f) / f
}

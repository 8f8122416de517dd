// What gc removes, decided from the index alone (store.ts applies it under its lock), and the sweep
// of stale partial downloads.

import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { isBlobHash } from './hash.ts'
import type { BlobIndex } from './index-db.ts'

export interface GcPlan {
  /** [job, hash] references of jobs that are not live */
  readonly deadRefs: Array<[string, string]>
  /** [hash, size] of the blobs to delete */
  readonly remove: Array<[string, number]>
}

/**
 * A blob goes if no live job references it and it was added (or last fetched) before `cutoff` (ms),
 * whether dead jobs referenced it or nothing did: a blob just fetched, or added for a job that is not
 * in the document yet (a submit in progress), stays.
 */
export async function planGc(index: BlobIndex, live: ReadonlySet<string>, cutoff: number): Promise<GcPlan> {
  const refs = await index.refsByBlob()
  const deadRefs: Array<[string, string]> = []
  for (const [hash, jobs] of refs) {
    for (const job of jobs) if (!live.has(job)) deadRefs.push([job, hash])
  }
  const remove: Array<[string, number]> = []
  for await (const [hash, entry] of index.blobs()) {
    const jobs = refs.get(hash) ?? []
    if (jobs.some((j) => live.has(j))) continue
    if (entry.added < cutoff) remove.push([hash, entry.size])
  }
  return { deadRefs, remove }
}

/** Deletes `<hash>.part` files not open now and untouched since `cutoff`; returns how many. */
export async function gcPartials(
  dir: string,
  open: ReadonlyMap<string, unknown>,
  cutoff: number,
): Promise<number> {
  let removed = 0
  for (const name of await readdir(dir)) {
    const hash = name.endsWith('.part') ? name.slice(0, -5) : ''
    if (!isBlobHash(hash) || open.has(hash)) continue
    const path = join(dir, name)
    const st = await stat(path).catch(() => null)
    if (st === null || st.mtimeMs >= cutoff) continue
    await rm(path, { force: true })
    removed++
  }
  return removed
}

// Work on a list, a few items at once: `lanes` workers each take the next item until none is left.
// The first failure rejects the whole and the lanes take no more items (those under way finish).

/** Calls `f(item, index)` for every item, at most `lanes` at once; resolves when all are done. */
export async function inLanes<T>(
  items: readonly T[],
  lanes: number,
  f: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0
  let failed = false
  const lane = async () => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        await f(items[i]!, i)
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane))
}

// Shared test helpers: bounded waiting (never a bare sleep as an assertion) and temp directories.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  { timeoutMs = 15_000, stepMs = 25 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false && v !== null) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, stepMs))
  }
}

export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `openfarm-${prefix}-`))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

/** `join` flags for nodes that render nothing: Blender's self-test would add seconds to each start. */
export const NO_RENDER_APPS: readonly string[] = ['--disable-app', 'blender', '--disable-app', 'ffmpeg']

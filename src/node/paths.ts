// Where a node keeps its files: an XDG-style data directory unless --data names another.

import { mkdir, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share')
  return join(base, 'openfarm')
}

export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config')
  return join(base, 'openfarm')
}

/** Files inside a node's data directory. */
export function dataPaths(dataDir: string) {
  return {
    dir: dataDir,
    farmKey: join(dataDir, 'farm.key'),
    peerKey: join(dataDir, 'peer.key'),
    db: join(dataDir, 'db'),
    /** Written while the node runs: how the CLI finds its local API. */
    api: join(dataDir, 'api.json'),
    work: join(dataDir, 'work'),
    /** Content-addressed blobs (inputs and outputs of jobs) and their index. */
    blobs: join(dataDir, 'blobs'),
    /** Task output lines this node's tasks wrote (the Log Router serves them). */
    logs: join(dataDir, 'logs'),
    /** Which jobs send their outputs to which local directory. */
    homes: join(dataDir, 'homes.json'),
  }
}

export class DirectoryError extends Error {
  static override readonly name = 'DirectoryError'
  override readonly name = 'DirectoryError'
}

/**
 * `mkdir -p` that gives up: Node's recursive mkdir loops for ever, using a core, where a directory
 * exists but refuses children with ENOENT (/proc, /sys). This makes each missing directory once,
 * from the top, and names the one that could not be made.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = []
  for (let d = resolve(dir); ; ) {
    const s = await stat(d).catch((err: NodeJS.ErrnoException) => {
      // ENOTDIR: a file further up, which the walk reaches and names
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null
      throw new DirectoryError(`cannot use ${d}: ${err.code ?? err.message}`)
    })
    if (s !== null) {
      if (!s.isDirectory()) throw new DirectoryError(`cannot make ${dir}: ${d} is not a directory`)
      break
    }
    missing.push(d)
    const parent = dirname(d)
    if (parent === d) break
    d = parent
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // made meanwhile by someone else (two pulls into one new directory): fine if it is one
      if (code === 'EEXIST' && (await stat(d).catch(() => null))?.isDirectory()) continue
      throw new DirectoryError(`cannot make ${d}: ${code ?? (err as Error).message}`)
    }
  }
}

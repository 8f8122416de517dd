// Where a node keeps its files: an XDG-style data directory unless --data names another.

import { homedir } from 'node:os'
import { join } from 'node:path'

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

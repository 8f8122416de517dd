// A farm of real `openfarm join` processes with Blender and ffmpeg enabled, for the end-to-end
// render tests: start, stop, restart a node, and run the CLI against one of them.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ApiClient } from '../../src/node/client.ts'
import type { FarmKey } from '../../src/node/farmkey.ts'
import { findPyCache, pyCacheRoot } from '../../src/runner/blender/pycache.ts'
import { waitFor } from '../helpers.ts'

const NODE = join(process.cwd(), 'node_modules/.bin/node')
const CLI = join(process.cwd(), 'bin/openfarm')
const run = promisify(execFile)

export interface FarmProc {
  readonly name: string
  readonly data: string
  proc: ChildProcess | null
  peerId: string
  client: ApiClient
}

export interface JobJson {
  id: string
  state: string
  spec: { dependsOn: string[]; inputsFrom: string[]; inputs: { path: string }[] }
  tasks: {
    index: number
    state: string
    owner: string | null
    attempt: number
    failures: number
    lastError: string | null
  }[]
}

export async function startNode(
  root: string,
  name: string,
  key: FarmKey,
  bootstrap: string | null,
): Promise<FarmProc> {
  const data = join(root, name)
  const args = [CLI, 'join', '--data', data, '--key', key.hex, '--name', name, '--no-mdns', '--speed', '1']
  args.push('--listen', '/ip4/127.0.0.1/tcp/0', '--dead-after', '3', '--disable-app', 'echo')
  if (bootstrap !== null) args.push('--bootstrap', bootstrap)
  const proc = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d) => {
    out += d
  })
  proc.stderr!.on('data', (d) => {
    out += d
  })
  await waitFor(`${name} up`, () => out.includes('local API') || proc.exitCode !== null, {
    timeoutMs: 60_000,
  })
  if (!out.includes('local API')) throw new Error(`${name} did not start:\n${out}`)
  const api = JSON.parse(await readFile(join(data, 'api.json'), 'utf8')) as { peerId: string }
  return { name, data, proc, peerId: api.peerId, client: await ApiClient.connect(data) }
}

/** Whether the node on `data` has built the bytecode cache of its Blender (runner/blender/pycache.ts). */
export async function pyCacheBuilt(data: string): Promise<boolean> {
  return (await findPyCache(join(pyCacheRoot(data), 'blender'))) !== undefined
}

export async function restartNode(p: FarmProc, key: FarmKey, bootstrap: string): Promise<void> {
  const root = join(p.data, '..')
  const fresh = await startNode(root, p.name, key, bootstrap)
  p.proc = fresh.proc
  p.client = fresh.client
}

export function kill9(p: FarmProc): void {
  p.proc?.kill('SIGKILL')
  p.proc = null
}

/** `openfarm ARGS --data DIR`: exit code and output (never throws for a failing command). */
export async function cli(
  data: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(NODE, [CLI, ...args, '--data', data], { timeout: 120_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/** md5 of the decoded pixels (PNG bytes differ run to run: they carry a date). */
export async function pixels(file: string): Promise<string> {
  const r = await run('ffmpeg', ['-v', 'error', '-i', file, '-f', 'md5', '-'])
  return r.stdout.trim()
}

export async function videoFrames(file: string): Promise<number> {
  const r = await run('ffprobe', [
    '-v',
    'error',
    '-count_frames',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=nb_read_frames',
    '-of',
    'csv=p=0',
    file,
  ])
  return Number(r.stdout.trim())
}

/** Renders frames 1..n of a scene with one plain `blender -b` process: the reference pixels. */
export async function directRender(
  blend: string,
  outDir: string,
  first: number,
  last: number,
): Promise<void> {
  await run(
    'blender',
    [
      '-b',
      blend,
      '-Y',
      '-o',
      join(outDir, 'frame_####'),
      '-F',
      'PNG',
      '-x',
      '1',
      '-s',
      String(first),
      '-e',
      String(last),
      '-a',
    ],
    { timeout: 180_000, maxBuffer: 64 * 1024 * 1024 },
  )
}

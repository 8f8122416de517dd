// Across a real (virtual) network: hosts in separate network namespaces made by ../shared/tools/lan.
// No --bootstrap anywhere: the peers find each other with mDNS. A host of another farm on the same
// LAN is never listed; the LAN is split in two, both halves take work, and after healing they agree.

import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { FarmKey } from '../../src/node/farmkey.ts'
import { NO_RENDER_APPS, tempDir, waitFor } from '../helpers.ts'

const run = promisify(execFile)
const LAN = resolve(process.cwd(), '../shared/tools/lan')
const NODE = join(process.cwd(), 'node_modules/.bin/node')
const CLI = join(process.cwd(), 'bin/openfarm')
const NAME = `of${process.pid % 10000}`

async function lanUsable(): Promise<string | null> {
  if (!existsSync(LAN)) return `${LAN} not found`
  try {
    await run(LAN, ['check'])
    return null
  } catch (err) {
    return `lan check failed: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`
  }
}

const why = await lanUsable()
if (why !== null) console.log(`# SKIPPED the LAN tests: ${why}`)

interface Job {
  id: string
  state: string
  tasks: { state: string; owner: string | null }[]
}

describe('a farm on a virtual LAN (mDNS, split and heal)', { skip: why ?? false }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  const data = (i: number) => join(dir.path, `h${i}`)

  async function cli<T>(i: number, ...args: string[]): Promise<T> {
    const { stdout } = await run(
      LAN,
      ['exec', NAME, String(i), NODE, CLI, ...args, '--data', data(i), '--json'],
      {
        timeout: 30_000,
      },
    )
    return JSON.parse(stdout) as T
  }

  function join_(i: number, farmKey: FarmKey): void {
    const args = [
      'exec',
      NAME,
      String(i),
      NODE,
      CLI,
      'join',
      '--data',
      data(i),
      '--key',
      farmKey.hex,
      ...NO_RENDER_APPS,
    ]
    args.push('--name', `h${i}`, '--listen', '/ip4/0.0.0.0/tcp/4100', '--dead-after', '3')
    const p = spawn(LAN, args, { stdio: 'ignore', detached: false })
    p.unref()
  }

  before(async () => {
    dir = await tempDir('lan')
    await run(LAN, ['up', '4', '-n', NAME])
    for (const i of [1, 2, 3]) join_(i, key)
    join_(4, FarmKey.generate()) // a neighbour's farm on the same LAN
  })

  after(async () => {
    await run(LAN, ['down', NAME]).catch(() => {})
    await dir?.remove()
  })

  it('peers find each other by mDNS alone; a host of another farm is never listed', async () => {
    for (const i of [1, 2, 3]) {
      await waitFor(
        `host ${i} to see the two others`,
        async () => {
          const hosts = await cli<{ name: string; liveness: string }[]>(i, 'hosts')
          return hosts.filter((h) => h.liveness === 'alive').length === 3
        },
        { timeoutMs: 45_000, stepMs: 500 },
      )
    }
    const hosts = await cli<{ name: string }[]>(1, 'hosts')
    assert.deepEqual(hosts.map((h) => h.name).sort(), ['h1', 'h2', 'h3'])
    const fourth = await cli<{ connected: string[] }>(4, 'info')
    assert.deepEqual(fourth.connected, [])
  })

  it('both halves of a split LAN take work and agree after healing', async () => {
    await run(LAN, ['split', NAME, '3'])
    const left = await cli<{ id: string }>(1, 'submit', 'echo', '--frames', '1-4', '--name', 'left')
    const right = await cli<{ id: string }>(3, 'submit', 'echo', '--frames', '1-4', '--name', 'right')
    await waitFor(
      'left job DONE on host 2',
      async () => (await cli<Job>(2, 'status', left.id)).state === 'DONE',
      {
        timeoutMs: 30_000,
        stepMs: 300,
      },
    )
    await waitFor(
      'right job DONE on host 3',
      async () => (await cli<Job>(3, 'status', right.id)).state === 'DONE',
      {
        timeoutMs: 30_000,
        stepMs: 300,
      },
    )
    const onThree = await cli<{ id: string }[]>(3, 'jobs')
    assert.ok(!onThree.some((j) => j.id === left.id), 'the cut-off half cannot see the other half’s job')
    await run(LAN, ['heal', NAME])
    await waitFor(
      'every host has both jobs, identical',
      async () => {
        const seen = await Promise.all(
          [1, 2, 3].map(async (i) => {
            const l = await cli<Job>(i, 'status', left.id)
            const r = await cli<Job>(i, 'status', right.id)
            return JSON.stringify([l.state, l.tasks, r.state, r.tasks])
          }),
        )
        return new Set(seen).size === 1 && seen[0]!.startsWith('["DONE"')
      },
      { timeoutMs: 60_000, stepMs: 500 },
    )
  })
})

// The host config file and `join`'s flags: defaults, file over defaults, flags over file, a named error
// naming the field and the file for every bad value, weekly windows across midnight and days, and the
// documented example (it must load, and what it resolves to must make a valid heartbeat).

import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  availabilityAt,
  defaultWatts,
  type HostConfig,
  type HostFlags,
  InvalidHostConfigError,
  isAvailable,
  loadHostConfig,
  MAX_HOST_CONFIG_BYTES,
  parseHostConfig,
  resolveHostSettings,
} from '../../src/node/hostconfig.ts'
import { encodeHeartbeat, type WeeklyWindow } from '../../src/protocol/heartbeat/codec.ts'
import { BUILTIN_APPS } from '../../src/runner/apps.ts'
import { tempDir } from '../helpers.ts'

const machine = { cores: 8, memoryMb: 16_384, hostname: 'box' }
const EXAMPLE = new URL('../../docs/host.example.json', import.meta.url).pathname

function throwsNamed(fn: () => unknown, source: string, field: string | null, message?: RegExp): void {
  assert.throws(fn, (err: Error) => {
    assert.ok(err instanceof InvalidHostConfigError, `${err.name}: ${err.message}`)
    assert.equal(err.name, 'InvalidHostConfigError')
    assert.equal(err.source, source)
    assert.equal(err.field, field, err.message)
    assert.ok(err.message.startsWith(`${source}: ${field ?? ''}`), err.message)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })
}

describe('host config', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  before(async () => {
    dir = await tempDir('hostconfig')
  })
  after(() => dir.remove())

  it('with no file and no flags: hostname, 1 slot, no tags, watts from cores, unknown price, always on', () => {
    assert.deepEqual(resolveHostSettings({}, {}, machine), {
      name: 'box',
      slots: 1,
      tags: [],
      gpus: [],
      wattsIdle: 33,
      wattsLoaded: 70,
      price: null,
      currency: null,
      availability: null,
      apps: { enable: [], disable: [] },
      speed: null,
    })
    assert.deepEqual(defaultWatts(2), { idle: 27, loaded: 40 })
    assert.deepEqual(defaultWatts(0), defaultWatts(1), 'a machine reporting no cores counts as one')
    assert.equal(resolveHostSettings({}, {}, { ...machine, hostname: '' }).name, 'host')
    assert.equal(resolveHostSettings({}, {}, { ...machine, hostname: 'h'.repeat(300) }).name.length, 100)
  })

  it('a missing default file means defaults; a missing --config file is an error', async () => {
    const env = { XDG_CONFIG_HOME: join(dir.path, 'nothing-here') }
    assert.deepEqual(await loadHostConfig(undefined, env), {})
    const missing = join(dir.path, 'nope.json')
    const expected = {
      name: 'InvalidHostConfigError',
      source: missing,
      field: null,
      message: /does not exist/,
    }
    await assert.rejects(loadHostConfig(missing), expected)
  })

  it('reads $XDG_CONFIG_HOME/openfarm/host.json, and the file overrides the defaults', async () => {
    const xdg = join(dir.path, 'xdg')
    await mkdir(join(xdg, 'openfarm'), { recursive: true })
    await writeFile(join(xdg, 'openfarm', 'host.json'), JSON.stringify({ name: 'from-file', slots: 3 }))
    const config = await loadHostConfig(undefined, { XDG_CONFIG_HOME: xdg })
    const s = resolveHostSettings(config, {}, machine)
    assert.equal(s.name, 'from-file')
    assert.equal(s.slots, 3)
    assert.equal(s.wattsIdle, 33, 'what the file leaves out keeps its default')
  })

  it('flags override the file', () => {
    const file: HostConfig = parseHostConfig(
      JSON.stringify({
        name: 'file',
        slots: 2,
        tags: ['a'],
        watts: { idle: 40, loaded: 150 },
        price: { perKwh: 0.3, currency: 'EUR' },
        speed: 2,
        apps: { enable: ['command'], disable: ['sleep'] },
      }),
      'host.json',
    )
    const fromFile = resolveHostSettings(file, {}, machine)
    assert.deepEqual(
      [fromFile.name, fromFile.slots, fromFile.tags, fromFile.wattsIdle, fromFile.wattsLoaded],
      ['file', 2, ['a'], 40, 150],
    )
    assert.deepEqual([fromFile.price, fromFile.currency, fromFile.speed], [0.3, 'EUR', 2])
    const flags: HostFlags = {
      name: 'flag',
      slots: '4',
      tags: 'gpu, linux,',
      wattsIdle: '50',
      wattsLoaded: '300',
      price: '0.12',
      currency: 'USD',
      speed: '0.5',
      enableApps: ['sleep'],
      disableApps: ['command'],
    }
    const s = resolveHostSettings(file, flags, machine)
    assert.deepEqual(
      [s.name, s.slots, s.tags, s.wattsIdle, s.wattsLoaded],
      ['flag', 4, ['gpu', 'linux'], 50, 300],
    )
    assert.deepEqual([s.price, s.currency, s.speed], [0.12, 'USD', 0.5])
    assert.deepEqual(s.apps, { enable: ['sleep'], disable: ['command'] })
    assert.deepEqual(
      resolveHostSettings(file, { tags: '' }, machine).tags,
      [],
      "--tags '' clears the file's tags",
    )
  })

  it('a power figure given alone keeps idle <= loaded; a contradiction is an error naming the flag', () => {
    const cfg = (watts: object) => parseHostConfig(JSON.stringify({ watts }), 'f.json')
    const hot = resolveHostSettings(cfg({ idle: 200 }), {}, machine)
    assert.deepEqual([hot.wattsIdle, hot.wattsLoaded], [200, 200])
    const frugal = resolveHostSettings(cfg({ loaded: 20 }), {}, machine)
    assert.deepEqual([frugal.wattsIdle, frugal.wattsLoaded], [20, 20])
    throwsNamed(
      () => resolveHostSettings(cfg({ loaded: 80 }), { wattsIdle: '100' }, machine),
      'command line',
      '--watts-idle',
    )
    throwsNamed(
      () => resolveHostSettings(cfg({ idle: 90 }), { wattsLoaded: '80' }, machine),
      'command line',
      '--watts-loaded',
    )
  })

  const bad: [string | null, unknown, RegExp?][] = [
    [null, '{ "name": ', /not JSON/],
    ['(top level)', [], /object/],
    ['slot', { slot: 2 }, /not a known key \(known: name, slots/],
    ['watts.idel', { watts: { idel: 30 } }, /not a known key/],
    ['availability[0].day', { availability: [{ day: [1], from: '01:00', to: '02:00' }] }, /not a known key/],
    ['_comment', { _comment: 5 }],
    ['watts._comment', { watts: { _comment: [1] } }],
    ['name', { name: '' }],
    ['name', { name: ' padded' }],
    ['name', { name: 'a\tb' }],
    ['slots', { slots: 0 }],
    ['slots', { slots: 1025 }],
    ['slots', { slots: 1.5 }],
    ['slots', { slots: '2' }],
    ['tags', { tags: 'gpu' }],
    ['tags', { tags: ['a', 'a'] }],
    ['tags[0]', { tags: ['has space'] }],
    ['watts', { watts: 100 }],
    ['watts.idle', { watts: { idle: -1 } }],
    ['watts.loaded', { watts: { loaded: 1e9 } }],
    ['watts.loaded', { watts: { idle: 100, loaded: 50 } }, /at least watts.idle/],
    ['price.perKwh', { price: { perKwh: -0.1 } }],
    ['price.perKwh', { price: { perKwh: '0.3' } }],
    ['price.currency', { price: { currency: 'eur' } }, /3-letter/],
    ['availability', { availability: 'always' }],
    ['availability[0].days', { availability: [{ days: [], from: '01:00', to: '02:00' }] }],
    ['availability[0].days[0]', { availability: [{ days: ['monday'], from: '01:00', to: '02:00' }] }],
    ['availability[0].days[0]', { availability: [{ days: [7], from: '01:00', to: '02:00' }] }],
    ['availability[0].from', { availability: [{ days: [1], from: '7:00', to: '09:00' }] }, /HH:MM/],
    ['availability[0].to', { availability: [{ days: [1], from: '07:00', to: '07:00' }] }, /whole day/],
    ['apps', { apps: ['blender'] }],
    ['apps.enable[0]', { apps: { enable: ['Blender!'] } }],
    ['apps', { apps: { enable: ['sleep'], disable: ['sleep'] } }, /both enables and disables/],
    ['gpus[0].memoryMb', { gpus: [{ name: 'rtx', memoryMb: -1 }] }],
    ['gpus[0].vram', { gpus: [{ name: 'rtx', memoryMb: 1, vram: 1 }] }],
    ['speed', { speed: 0 }],
    ['speed', { speed: 0.001 }],
    ['speed', { speed: 5000 }],
  ]
  for (const [i, [field, x, message]] of bad.entries()) {
    it(`rejects a bad ${field ?? 'file'} with a named error naming the field and the file (case ${i})`, () => {
      const text = typeof x === 'string' ? x : JSON.stringify(x)
      throwsNamed(() => parseHostConfig(text, '/etc/host.json'), '/etc/host.json', field, message)
    })
  }

  it('accepts _comment (a string or lines) in any object, and day names', () => {
    const c = parseHostConfig(
      JSON.stringify({
        _comment: ['line 1', 'line 2'],
        watts: { _comment: 'x', idle: 10 },
        availability: [{ _comment: 'x', days: ['Sat', 'sun', 1], from: '00:00', to: '24:00' }],
      }),
      'f.json',
    )
    assert.deepEqual(c.availability, [{ days: [6, 0, 1], from: '00:00', to: '24:00' }])
  })

  it('rejects a file above the size limit, naming it', async () => {
    const big = join(dir.path, 'big.json')
    await writeFile(big, `{"name": "${'x'.repeat(MAX_HOST_CONFIG_BYTES)}"}`)
    await assert.rejects(loadHostConfig(big), {
      name: 'InvalidHostConfigError',
      message: /big\.json: is larger/,
    })
  })

  const badFlags: [keyof HostFlags, string, string][] = [
    ['slots', 'abc', '--slots'],
    ['slots', '', '--slots'],
    ['slots', '0', '--slots'],
    ['speed', '0', '--speed'],
    ['speed', 'fast', '--speed'],
    ['price', '-1', '--price'],
    ['currency', 'eu', '--currency'],
    ['tags', 'ok,not ok', '--tags[1]'],
    ['wattsIdle', 'x', '--watts-idle'],
    ['wattsLoaded', '-5', '--watts-loaded'],
    ['name', '', '--name'],
  ]
  for (const [key, value, flag] of badFlags) {
    it(`rejects ${flag} ${JSON.stringify(value)} naming the flag`, () => {
      throwsNamed(() => resolveHostSettings({}, { [key]: value }, machine), 'command line', flag)
    })
  }
  it('rejects a malformed --enable-app naming the flag', () => {
    throwsNamed(
      () => resolveHostSettings({}, { enableApps: ['x y'] }, machine),
      'command line',
      '--enable-app[0]',
    )
  })

  it('the documented example loads, names real apps, and makes a valid heartbeat', async () => {
    const config = await loadHostConfig(EXAMPLE)
    const s = resolveHostSettings(config, {}, machine)
    assert.equal(s.name, 'studio-pc')
    assert.ok(s.availability !== null && s.availability.length === 2)
    for (const name of [...s.apps.enable, ...s.apps.disable]) {
      assert.ok(
        BUILTIN_APPS.some((a) => a.name === name),
        `${name} is a built-in app`,
      )
    }
    const monday3am = new Date(2026, 10, 23, 3, 0)
    const { name, slots, tags, gpus, wattsIdle, wattsLoaded, price, currency } = s
    const availability = availabilityAt(s.availability, monday3am)
    const [running, apps, appsUnavailable] = [[], [], []]
    const rest = { seq: 0, free: slots, cores: 8, memoryMb: 1, speed: 1, speedSource: 'benchmark' } as const
    const hb = {
      v: 2,
      name,
      slots,
      tags,
      gpus,
      wattsIdle,
      wattsLoaded,
      price,
      currency,
      availability,
    } as const
    encodeHeartbeat({ ...hb, ...rest, running, apps, appsUnavailable })
    // Sunday night is not a weeknight window; Monday 03:00 follows Sunday, so it is unavailable
    assert.equal(availabilityAt(s.availability, monday3am)?.available, false)
    assert.equal(isAvailable(s.availability, new Date(2026, 10, 24, 3, 0)), true, 'Tuesday 03:00')
  })
})

describe('isAvailable (local time)', () => {
  const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
  /** `+Mon 09:00 -Fri 17:30`: available (+) or not (-) at that time in the week of Sunday 2026-11-22. */
  const check = (windows: WeeklyWindow[] | null, cases: string) => {
    for (const c of cases.match(/[+-]\w{3} \d\d:\d\d/g)!) {
      const [day, hh, mm] = [DAYS.indexOf(c.slice(1, 4)), Number(c.slice(5, 7)), Number(c.slice(8))]
      const date = new Date(2026, 10, 22 + day, hh, mm)
      assert.equal(DAYS[date.getDay()], c.slice(1, 4))
      assert.equal(isAvailable(windows, date), c[0] === '+', `${c} in ${JSON.stringify(windows)}`)
    }
  }

  it('null is always; an empty list is never', () => {
    check(null, '+Sun 00:00 +Wed 12:30')
    check([], '-Sun 00:00 -Wed 12:30')
    assert.equal(availabilityAt(null, new Date()), null)
    assert.deepEqual(availabilityAt([], new Date()), { windows: [], available: false })
  })

  it('a daytime window: from inclusive, to exclusive, listed days only', () => {
    const office: WeeklyWindow[] = [{ days: [1, 2, 3, 4, 5], from: '09:00', to: '17:30' }]
    check(office, '-Mon 08:59 +Mon 09:00 +Wed 17:29 -Fri 17:30 -Sat 12:00 -Sun 12:00')
  })

  it('across midnight: the evening of a listed day and the morning after it', () => {
    const fridayNight: WeeklyWindow[] = [{ days: [5], from: '22:00', to: '06:00' }]
    check(fridayNight, '-Fri 21:59 +Fri 22:00 +Fri 23:59 +Sat 00:00 +Sat 05:59')
    check(fridayNight, '-Sat 06:00 -Sat 22:30 -Thu 23:00 -Fri 05:00')
  })

  it('across midnight and the week: Saturday night runs into Sunday morning', () => {
    check([{ days: [6], from: '23:00', to: '01:00' }], '+Sat 23:30 +Sun 00:30 -Sun 01:00 -Sun 23:30')
  })

  it('a whole day ends at 24:00; windows add up', () => {
    const weekend: WeeklyWindow[] = [
      { days: [6, 0], from: '00:00', to: '24:00' },
      { days: [3], from: '12:00', to: '13:00' },
    ]
    check(weekend, '+Sat 00:00 +Sun 23:59 -Mon 00:00 +Wed 12:15 -Wed 13:00 -Tue 12:15')
  })
})

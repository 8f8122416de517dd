// A valid job spec for tests, with overrides.

export function spec(id: string, taskCount = 4, extra: Record<string, unknown> = {}) {
  return {
    id,
    name: `job ${id}`,
    group: null,
    app: 'echo',
    args: { text: 'hi' },
    frames: { start: 1, end: taskCount * 2, step: 1 },
    chunk: 2,
    taskCount,
    priority: 0,
    maxRetries: 3,
    dependsOn: [],
    submittedBy: 'pA',
    submittedAt: 1_700_000_000_000,
    ...extra,
  }
}

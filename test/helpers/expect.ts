import * as assert from 'uvu/assert'
import type { WorkloadSpec } from '../../src/workloads/types.js'

/** Runs `fn`, which must throw `type` with a one-line message equal to (or matching) `message`. */
export function oneLineError (fn: () => unknown, type: new (...args: any[]) => Error, message: string | RegExp): void {
  try {
    fn()
  } catch (err) {
    assert.instance(err, type)
    assert.is((err as Error).name, type.name)
    if (typeof message === 'string') assert.is((err as Error).message, message)
    else assert.match((err as Error).message, message)
    assert.not.match((err as Error).message, /\n/)
    return
  }
  assert.unreachable(`expected ${type.name} ${String(message)}`)
}

/** The spec of a one-replica container workload `default/<name>` with every default. */
export function defaultContainerSpec (name: string, image: string, source: string, createdAt: number): WorkloadSpec {
  return {
    id: `default/${name}`,
    name,
    namespace: 'default',
    kind: 'container',
    topics: [],
    replicas: 1,
    resources: { cpuMillis: 100, memoryBytes: 64 * 1024 * 1024 },
    nodeSelector: {},
    delivery: 'queue',
    retries: 0,
    timeoutMs: 5000,
    memoryLimitMb: 64,
    container: {
      image,
      env: [],
      ports: [],
      restartPolicy: 'Always',
      imagePullPolicy: 'IfNotPresent',
      limits: {},
      backoff: { initialMs: 1000, maxMs: 300_000, resetAfterMs: 600_000 },
      terminationGracePeriodSeconds: 30
    },
    source,
    createdAt
  }
}

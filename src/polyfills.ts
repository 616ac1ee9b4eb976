/**
 * Runtime polyfills that must be in place before libp2p loads.
 *
 * Node 20 lacks `Promise.withResolvers` (added in Node 22), which libp2p v3,
 * @chainsafe/libp2p-yamux and it-queue call. Every entry point (bin/beemesh.js,
 * the test runner, src/transport) imports this module first.
 */
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(): PromiseWithResolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}

export const polyfillsLoaded = true

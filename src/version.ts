/** BeeMesh's version: what `beemesh --version`, node status and heartbeats report. */
export const VERSION = '0.1.0'

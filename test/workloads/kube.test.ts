import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parse } from 'yaml'
import { parseAnyManifest } from '../../src/workloads/manifest.js'
import { toWorkloadSpec } from '../../src/workloads/spec.js'
import { InvalidManifestError } from '../../src/workloads/errors.js'
import { parseKubeManifest } from '../../src/workloads/kube.js'
import { defaultContainerSpec, oneLineError } from '../helpers/expect.js'

const SOURCE = 'deploy/web.yaml'

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  containers:
    - name: hello
      image: busybox:1.36
`

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
        tier: front
    spec:
      containers:
        - name: web
          image: busybox:1.36
          command: [httpd, -f, -p, "8080"]
          ports:
            - containerPort: 8080
`

function kube (text: string): ReturnType<typeof parseKubeManifest> {
  return parseKubeManifest(parse(text), SOURCE)
}

function manifestError (text: string, message: string | RegExp): void {
  oneLineError(() => parseAnyManifest(text, SOURCE), InvalidManifestError, message)
}

/** The Pod manifest with `extra` lines appended to its container (indented by the caller's 6 spaces). */
function podWith (container: string, spec = '', metadata = ''): string {
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\n${metadata}spec:\n${spec}  containers:\n    - name: hello\n      image: busybox:1.36\n${container}`
}

test('a minimal Pod becomes a container definition, and a spec with every default', () => {
  const def = kube(POD)
  assert.equal(def, { name: 'hello', kind: 'container', image: 'busybox:1.36' })
  const spec = toWorkloadSpec(def, { source: SOURCE, now: 3 })
  assert.equal(spec, defaultContainerSpec('hello', 'busybox:1.36', SOURCE, 3))
  assert.is('artifact' in spec, false)
})

test('every supported Pod field reaches the definition', () => {
  const def = kube(`apiVersion: v1
kind: Pod
metadata:
  name: api
  namespace: shop
  labels:
    app: api
  annotations:
    team: payments
    beemesh.io/restart-backoff: 200ms
    beemesh.io/restart-backoff-max: 5s
spec:
  restartPolicy: OnFailure
  nodeSelector:
    kubernetes.io/arch: arm64
  terminationGracePeriodSeconds: 10
  containers:
    - name: api
      image: registry.example.com/team/api:2.1
      command: [/bin/api]
      args: [--port, "8080"]
      env:
        - name: MODE
          value: prod
        - name: EMPTY
      ports:
        - name: http
          containerPort: 8080
          hostPort: 80
        - containerPort: 9090
          protocol: UDP
      workingDir: /srv
      imagePullPolicy: Never
      resources:
        requests:
          cpu: 250m
        limits:
          cpu: "1"
          memory: 256Mi
`)
  assert.equal(def, {
    name: 'api',
    kind: 'container',
    namespace: 'shop',
    image: 'registry.example.com/team/api:2.1',
    command: ['/bin/api'],
    args: ['--port', '8080'],
    env: [{ name: 'MODE', value: 'prod' }, { name: 'EMPTY', value: '' }],
    ports: [{ name: 'http', containerPort: 8080, hostPort: 80 }, { containerPort: 9090, protocol: 'UDP' }],
    workingDir: '/srv',
    restartPolicy: 'OnFailure',
    imagePullPolicy: 'Never',
    limits: { cpu: '1', memory: '256Mi' },
    resources: { cpu: '250m' },
    nodeSelector: { 'kubernetes.io/arch': 'arm64' },
    backoff: { initialMs: 200, maxMs: 5000 },
    terminationGracePeriodSeconds: 10
  })
  const spec = toWorkloadSpec(def, { source: SOURCE, now: 0 })
  assert.is(spec.id, 'shop/api')
  // The CPU request is given; the memory request defaults to the limit.
  assert.equal(spec.resources, { cpuMillis: 250, memoryBytes: 256 * 1024 * 1024 })
  assert.equal(spec.container?.limits, { cpuMillis: 1000, memoryBytes: 256 * 1024 * 1024 })
  assert.equal(spec.container?.ports, [{ containerPort: 8080, hostPort: 80, protocol: 'TCP', name: 'http' }, { containerPort: 9090, protocol: 'UDP' }])
  assert.equal(spec.container?.backoff, { initialMs: 200, maxMs: 5000, resetAfterMs: 600_000 })
})

test('a Deployment gives its replicas (1 by default) and its template\'s container', () => {
  const def = kube(DEPLOYMENT)
  assert.equal(def, {
    name: 'web',
    kind: 'container',
    namespace: 'shop',
    replicas: 3,
    image: 'busybox:1.36',
    command: ['httpd', '-f', '-p', '8080'],
    ports: [{ containerPort: 8080 }]
  })
  assert.is(toWorkloadSpec(def, { source: SOURCE, now: 0 }).replicas, 3)
  assert.is(kube(DEPLOYMENT.replace('  replicas: 3\n', '')).replicas, 1)
  assert.is(kube(DEPLOYMENT.replace('    spec:\n', '    spec:\n      restartPolicy: Always\n')).restartPolicy, 'Always')
})

test('the pod template\'s backoff annotations win over the Deployment\'s', () => {
  const text = DEPLOYMENT
    .replace('  namespace: shop\n', '  namespace: shop\n  annotations:\n    beemesh.io/restart-backoff: 2s\n    beemesh.io/restart-backoff-max: 1m\n')
    .replace('        tier: front\n', '        tier: front\n      annotations:\n        beemesh.io/restart-backoff: 1.5s\n')
  assert.equal(kube(text).backoff, { initialMs: 1500, maxMs: 60_000 })
  const onlyMax = kube(podWith('', '', '  annotations:\n    beemesh.io/restart-backoff-max: 500ms\n'))
  assert.equal(toWorkloadSpec(onlyMax, { source: SOURCE, now: 0 }).container?.backoff, { initialMs: 500, maxMs: 500, resetAfterMs: 600_000 })
})

test('parseAnyManifest tells Actor manifests from Pods and Deployments', () => {
  const actor = parseAnyManifest('apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: ./w.ts\n  replicas: 2\n', '/srv/app/w.yaml')
  assert.equal(actor, { type: 'actor', manifest: { module: '/srv/app/w.ts', overrides: { replicas: 2 } } })
  assert.equal(parseAnyManifest(POD, SOURCE), { type: 'container', definition: kube(POD) })
  const deployment = parseAnyManifest(DEPLOYMENT, SOURCE)
  assert.is(deployment.type, 'container')
  if (deployment.type === 'container') assert.is(deployment.definition.replicas, 3)
  const json = parseAnyManifest(JSON.stringify(parse(POD)), 'deploy/hello.json')
  assert.equal(json, { type: 'container', definition: { name: 'hello', kind: 'container', image: 'busybox:1.36' } })
})

test('the example manifests parse', () => {
  const root = fileURLToPath(new URL('../../examples/containers', import.meta.url))
  const hello = parseAnyManifest(readFileSync(`${root}/hello-pod.yaml`, 'utf8'), 'hello-pod.yaml')
  assert.is(hello.type, 'container')
  if (hello.type === 'container') {
    assert.is(hello.definition.restartPolicy, 'Never')
    assert.equal(hello.definition.command, ['sh', '-c', 'echo hello from beemesh; echo to stderr >&2'])
  }
  const web = parseAnyManifest(readFileSync(`${root}/web-deployment.yaml`, 'utf8'), 'web-deployment.yaml')
  assert.is(web.type, 'container')
  if (web.type === 'container') {
    const spec = toWorkloadSpec(web.definition, { source: 'web-deployment.yaml', now: 0 })
    assert.is(spec.replicas, 2)
    assert.is(spec.container?.restartPolicy, 'Always')
    assert.equal(spec.container?.command, ['httpd', '-f', '-p', '8080'])
  }
})

test('the kind and apiVersion are checked', () => {
  manifestError(POD.replace('apiVersion: v1', 'apiVersion: apps/v1'), 'deploy/web.yaml: apiVersion: expected "v1" for a Pod, got "apps/v1"')
  manifestError(DEPLOYMENT.replace('apiVersion: apps/v1', 'apiVersion: extensions/v1beta1'), 'deploy/web.yaml: apiVersion: expected "apps/v1" for a Deployment, got "extensions/v1beta1"')
  manifestError(POD.replace('kind: Pod', 'kind: StatefulSet'), 'deploy/web.yaml: kind: expected "Actor", "Pod" or "Deployment", got "StatefulSet"')
  manifestError(POD.replace('kind: Pod\n', ''), 'deploy/web.yaml: kind: missing; expected "Actor", "Pod" or "Deployment"')
  manifestError('apiVersion: beemesh.io/v1\nkind: Pod\n', /^deploy\/web\.yaml: apiVersion: expected "v1" for a Pod, got "beemesh\.io\/v1"/)
  manifestError('apiVersion: beemesh.io/v1\nkind: Deploy\n', /^deploy\/web\.yaml: kind: expected "Actor", got "Deploy" \(and 1 more problem\)$/)
  assert.throws(() => parseKubeManifest({ apiVersion: 'beemesh.io/v1', kind: 'Actor' }, SOURCE), (err: Error) => err.message === 'deploy/web.yaml: kind: expected "Pod" or "Deployment", got "Actor"')
  assert.throws(() => parseKubeManifest([], SOURCE), (err: Error) => err.message === 'deploy/web.yaml: expected a mapping with apiVersion, kind, metadata and spec')
})

test('an empty file, a non-mapping or several documents are refused', () => {
  manifestError('', 'deploy/web.yaml: the manifest is empty; expected an Actor (apiVersion: beemesh.io/v1), a Pod (v1) or a Deployment (apps/v1)')
  manifestError('- a\n', 'deploy/web.yaml: expected a mapping with apiVersion, kind, metadata and spec')
  manifestError(`${POD}---\n${DEPLOYMENT}`, /^deploy\/web\.yaml: invalid YAML at line \d+, column 1: the file holds more than one YAML document; put one Actor, Pod or Deployment per file$/)
  manifestError('kind: Pod\nkind: Pod\n', /^deploy\/web\.yaml: invalid YAML at line 2, column 1: Map keys must be unique$/)
})

test('BeeMesh runs exactly one container per pod', () => {
  const two = `${POD}    - name: side\n      image: busybox:1.36\n`
  manifestError(two, 'deploy/web.yaml: spec.containers: BeeMesh runs one container per pod for now; got 2')
  // The count comes first, even when the second container is also wrong.
  manifestError(`${POD}    - name: side\n      livenessProbe: {}\n`, 'deploy/web.yaml: spec.containers: BeeMesh runs one container per pod for now; got 2')
  manifestError(DEPLOYMENT.replace('              - containerPort: 8080\n', '              - containerPort: 8080\n        - name: b\n          image: b\n').replace('            - containerPort: 8080\n', '            - containerPort: 8080\n        - name: b\n          image: b\n'),
    'deploy/web.yaml: spec.template.spec.containers: BeeMesh runs one container per pod for now; got 2')
  manifestError('apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers: []\n', 'deploy/web.yaml: spec.containers: expected one container, got an empty list')
  manifestError('apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec: {}\n', 'deploy/web.yaml: spec.containers: missing; expected a list of one container')
  manifestError('apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n', /^deploy\/web\.yaml: spec: missing; expected a pod spec/)
})

test('metadata is checked: a DNS-1123 name is required', () => {
  manifestError(POD.replace('  name: hello\nspec', '  namespace: shop\nspec'), 'deploy/web.yaml: metadata.name: missing; expected a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit)')
  manifestError(POD.replace('name: hello\nspec', 'name: Hello_World\nspec'), /^deploy\/web\.yaml: metadata\.name: expected a DNS-1123 label .*got "Hello_World"$/)
  manifestError(POD.replace('name: hello\nspec', 'name: hello\n  namespace: Prod\nspec'), /metadata\.namespace: expected a DNS-1123 label/)
  manifestError(podWith('', '', '  labels:\n    tier: 1\n'), 'deploy/web.yaml: metadata.labels.tier: expected a string label value (quote numbers and booleans in YAML), got 1')
  manifestError(podWith('', '', '  uid: 1234\n'), 'deploy/web.yaml: metadata.uid: not supported by BeeMesh; remove it')
  manifestError(podWith('', '', '  lables:\n    a: b\n'), 'deploy/web.yaml: metadata.lables: unknown field (did you mean "labels"?)')
})

test('container fields are checked, each error naming its path', () => {
  manifestError(POD.replace('      image: busybox:1.36\n', ''), /^deploy\/web\.yaml: spec\.containers\[0\]\.image: missing; expected an image reference such as "busybox:1\.36"/)
  manifestError(POD.replace('image: busybox:1.36', 'image: BusyBox'), /^deploy\/web\.yaml: spec\.containers\[0\]\.image: expected an image reference .*got "BusyBox"$/)
  manifestError(POD.replace('    - name: hello\n', '    - '), /^deploy\/web\.yaml: spec\.containers\[0\]\.name: missing; expected a DNS-1123 label/)
  manifestError(podWith('      command: sh -c "echo hi"\n'), 'deploy/web.yaml: spec.containers[0].command: expected a list of strings, got "sh -c \\"echo hi\\""')
  manifestError(podWith('      args: [-p, 8080]\n'), 'deploy/web.yaml: spec.containers[0].args[1]: expected a string (quote numbers and booleans in YAML), got 8080')
  manifestError(podWith('      env:\n        - name: PORT\n          value: 8080\n'), 'deploy/web.yaml: spec.containers[0].env[0].value: expected a string (quote numbers and booleans in YAML), got 8080')
  manifestError(podWith('      env:\n        PORT: "8080"\n'), 'deploy/web.yaml: spec.containers[0].env: expected a list of { name, value }')
  manifestError(podWith('      env:\n        - name: A\n        - name: A\n'), 'deploy/web.yaml: spec.containers[0].env[1].name: "A" is set twice (also in env[0])')
  manifestError(podWith('      ports:\n        - containerPort: 0\n'), 'deploy/web.yaml: spec.containers[0].ports[0].containerPort: expected a port number from 1 to 65535, got 0')
  manifestError(podWith('      ports:\n        - containerPort: 53\n          protocol: SCTP\n'), 'deploy/web.yaml: spec.containers[0].ports[0].protocol: expected "TCP" or "UDP", got "SCTP"')
  manifestError(podWith('      ports:\n        - containerPort: 80\n        - containerPort: 80\n          protocol: TCP\n'), 'deploy/web.yaml: spec.containers[0].ports[1]: containerPort 80/TCP is declared twice (also in ports[0])')
  manifestError(podWith('      ports:\n        - containerPort: 80\n          hostPort: 8080\n        - containerPort: 81\n          hostPort: 8080\n'), 'deploy/web.yaml: spec.containers[0].ports[1]: hostPort 8080/TCP is declared twice (also in ports[0])')
  manifestError(podWith('      ports:\n        - port: 80\n'), 'deploy/web.yaml: spec.containers[0].ports[0].containerPort: missing; expected a port number from 1 to 65535 (and 1 more problem)')
  manifestError(podWith('      workingDir: srv\n'), 'deploy/web.yaml: spec.containers[0].workingDir: expected an absolute path such as "/app", got "srv"')
  manifestError(podWith('      imagePullPolicy: always\n'), 'deploy/web.yaml: spec.containers[0].imagePullPolicy: expected "Always", "IfNotPresent" or "Never", got "always"')
})

test('resources: bad quantities name their path; a request cannot exceed its limit', () => {
  manifestError(podWith('      resources:\n        limits:\n          memory: 1GB\n'), /^deploy\/web\.yaml: spec\.containers\[0\]\.resources\.limits\.memory: invalid memory quantity "1GB": expected /)
  manifestError(podWith('      resources:\n        requests:\n          cpu: lots\n'), /^deploy\/web\.yaml: spec\.containers\[0\]\.resources\.requests\.cpu: invalid CPU quantity "lots"/)
  manifestError(podWith('      resources:\n        limits:\n          memory: 64m\n'), /resources\.limits\.memory: invalid memory quantity "64m": the suffix "m" means thousandths of a byte/)
  manifestError(podWith('      resources:\n        requests:\n          cpu: "2"\n        limits:\n          cpu: "1"\n'), 'deploy/web.yaml: spec.containers[0].resources.requests.cpu: the request "2" is more than the limit "1"; a request cannot exceed its limit')
  manifestError(podWith('      resources:\n        limits:\n          ephemeral-storage: 1Gi\n'), 'deploy/web.yaml: spec.containers[0].resources.limits["ephemeral-storage"]: not supported by BeeMesh (only cpu and memory); remove it')
  manifestError(podWith('      resources:\n        limits:\n          memroy: 1Gi\n'), 'deploy/web.yaml: spec.containers[0].resources.limits.memroy: unknown field (did you mean "memory"?)')
  manifestError(podWith('      resources:\n        limit:\n          memory: 1Gi\n'), 'deploy/web.yaml: spec.containers[0].resources.limit: unknown field (did you mean "limits"?)')
})

test('Kubernetes fields BeeMesh does not honour are refused by name', () => {
  manifestError(podWith('      livenessProbe:\n        httpGet: { path: /, port: 80 }\n'), 'deploy/web.yaml: spec.containers[0].livenessProbe: not supported by BeeMesh; remove it')
  manifestError(podWith('      volumeMounts: []\n'), 'deploy/web.yaml: spec.containers[0].volumeMounts: not supported by BeeMesh (containers get no volumes yet); remove it')
  manifestError(podWith('      securityContext:\n        runAsUser: 1000\n'), 'deploy/web.yaml: spec.containers[0].securityContext: not supported by BeeMesh; remove it')
  manifestError(podWith('      env:\n        - name: TOKEN\n          valueFrom:\n            secretKeyRef: { name: s, key: k }\n'), 'deploy/web.yaml: spec.containers[0].env[0].valueFrom: not supported by BeeMesh (no secrets, config maps or field references); give the value itself')
  manifestError(podWith('      ports:\n        - containerPort: 80\n          hostIP: 127.0.0.1\n'), 'deploy/web.yaml: spec.containers[0].ports[0].hostIP: not supported by BeeMesh; remove it')
  manifestError(podWith('      restartPolicy: Always\n'), 'deploy/web.yaml: spec.containers[0].restartPolicy: not supported on a container; set the pod\'s spec.restartPolicy')
  manifestError(podWith('', '  volumes: []\n'), 'deploy/web.yaml: spec.volumes: not supported by BeeMesh (containers get no volumes yet); remove it')
  manifestError(podWith('', '  initContainers: []\n'), 'deploy/web.yaml: spec.initContainers: not supported by BeeMesh (one container per pod for now); remove it')
  manifestError(podWith('', '  tolerations: []\n  affinity: {}\n'), 'deploy/web.yaml: spec.tolerations: not supported by BeeMesh; remove it; also not accepted: affinity')
  manifestError(`${POD}status:\n  phase: Running\n`, 'deploy/web.yaml: status: not accepted in a manifest (Kubernetes reports it); remove it')
})

test('misspelt fields get a hint from the fields of their own object', () => {
  manifestError(podWith('      comand: [sh]\n'), 'deploy/web.yaml: spec.containers[0].comand: unknown field (did you mean "command"?)')
  manifestError(podWith('      ImagePullPolicy: Never\n'), 'deploy/web.yaml: spec.containers[0].ImagePullPolicy: unknown field (did you mean "imagePullPolicy"?)')
  manifestError(podWith('', '  restartpolicy: Never\n'), 'deploy/web.yaml: spec.restartpolicy: unknown field (did you mean "restartPolicy"?)')
  manifestError(podWith('', '  nodeSelecter: {}\n'), 'deploy/web.yaml: spec.nodeSelecter: unknown field (did you mean "nodeSelector"?)')
  manifestError(podWith('', '  replicas: 2\n'), 'deploy/web.yaml: spec.replicas: unknown field')
  manifestError(podWith('      colour: blue\n'), 'deploy/web.yaml: spec.containers[0].colour: unknown field')
  manifestError(`${POD}metdata: {}\n`, 'deploy/web.yaml: metdata: unknown field (did you mean "metadata"?)')
})

test('pod spec fields are checked', () => {
  manifestError(podWith('', '  restartPolicy: Sometimes\n'), 'deploy/web.yaml: spec.restartPolicy: expected "Always", "OnFailure" or "Never", got "Sometimes"')
  manifestError(podWith('', '  terminationGracePeriodSeconds: -5\n'), 'deploy/web.yaml: spec.terminationGracePeriodSeconds: expected an integer from 0 to 3600, got -5')
  manifestError(podWith('', '  nodeSelector:\n    gpu: true\n'), 'deploy/web.yaml: spec.nodeSelector.gpu: expected a string label value (quote numbers and booleans in YAML), got true')
})

test('a Deployment\'s selector must match its template labels, and it restarts Always', () => {
  manifestError(DEPLOYMENT.replace('      app: web\n  template', '      app: api\n  template'), 'deploy/web.yaml: spec.selector: selector does not match template labels (spec.template.metadata.labels has no app: "api")')
  manifestError(DEPLOYMENT.replace('    metadata:\n      labels:\n        app: web\n        tier: front\n', ''), /^deploy\/web\.yaml: spec\.selector: selector does not match template labels/)
  manifestError(DEPLOYMENT.replace('    matchLabels:\n      app: web\n', '    matchLabels: {}\n'), 'deploy/web.yaml: spec.selector.matchLabels: empty selector is invalid for a Deployment; expected at least one label')
  manifestError(DEPLOYMENT.replace('  selector:\n    matchLabels:\n      app: web\n', ''), 'deploy/web.yaml: spec.selector: missing; expected an object with matchLabels matching spec.template.metadata.labels')
  manifestError(DEPLOYMENT.replace('    matchLabels:\n', '    matchExpressions: []\n    matchLabels:\n'), 'deploy/web.yaml: spec.selector.matchExpressions: not supported by BeeMesh; select with matchLabels')
  manifestError(DEPLOYMENT.replace('    spec:\n', '    spec:\n      restartPolicy: Never\n'), 'deploy/web.yaml: spec.template.spec.restartPolicy: expected "Always" (the only restart policy a Deployment allows), got "Never"')
  manifestError(DEPLOYMENT.replace('replicas: 3', 'replicas: 0'), 'deploy/web.yaml: spec.replicas: expected an integer from 1 to 100, got 0')
  manifestError(DEPLOYMENT.replace('  replicas: 3\n', '  replicas: 3\n  strategy:\n    type: Recreate\n'), 'deploy/web.yaml: spec.strategy: not supported by BeeMesh; remove it')
  manifestError(DEPLOYMENT.replace('  replicas: 3\n', '  replica: 3\n'), 'deploy/web.yaml: spec.replica: unknown field (did you mean "replicas"?)')
  manifestError(DEPLOYMENT.replace('          image: busybox:1.36\n', '          image: busybox:1.36\n          readinessProbe: {}\n'), 'deploy/web.yaml: spec.template.spec.containers[0].readinessProbe: not supported by BeeMesh; remove it')
  manifestError(DEPLOYMENT.replace('        tier: front\n', '        tier: front\n      namespace: shop\n'), 'deploy/web.yaml: spec.template.metadata.namespace: not supported in a pod template; set metadata.namespace of the Deployment')
  manifestError(DEPLOYMENT.replace('          image: busybox:1.36\n', ''), /^deploy\/web\.yaml: spec\.template\.spec\.containers\[0\]\.image: missing; expected an image reference/)
})

test('the backoff annotations take durations and are checked', () => {
  const annotated = (annotations: string): string => podWith('', '', `  annotations:\n${annotations}`)
  assert.equal(kube(annotated('    beemesh.io/restart-backoff: 1m\n')).backoff, { initialMs: 60_000 })
  assert.equal(kube(annotated('    beemesh.io/restart-backoff: 250ms\n')).backoff, { initialMs: 250 })
  assert.is(kube(annotated('    example.com/owner: me\n')).backoff, undefined)
  manifestError(annotated('    beemesh.io/restart-backoff: fast\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backoff"]: expected a duration such as "200ms", "5s" or "1m", got "fast"')
  manifestError(annotated('    beemesh.io/restart-backoff: 2h\n'), /metadata\.annotations\["beemesh\.io\/restart-backoff"\]: expected a duration such as/)
  manifestError(annotated('    beemesh.io/restart-backoff-max: 0s\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backoff-max"]: expected a duration from 1ms to 60m, got "0s"')
  manifestError(annotated('    beemesh.io/restart-backoff: 200\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backoff"]: expected a string annotation value (quote numbers and booleans in YAML), got 200')
  manifestError(annotated('    beemesh.io/restart-backof: 1s\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backof"]: unknown BeeMesh annotation (did you mean "beemesh.io/restart-backoff"?)')
  manifestError(annotated('    beemesh.io/replicas: "3"\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/replicas"]: unknown BeeMesh annotation; expected "beemesh.io/restart-backoff" or "beemesh.io/restart-backoff-max"')
  manifestError(annotated('    beemesh.io/restart-backoff: 10s\n    beemesh.io/restart-backoff-max: 5s\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backoff"]: "10s" is more than beemesh.io/restart-backoff-max ("5s")')
  manifestError(annotated('    beemesh.io/restart-backoff: 10m\n'), 'deploy/web.yaml: metadata.annotations["beemesh.io/restart-backoff"]: "10m" is more than the longest delay (5m by default; raise it with beemesh.io/restart-backoff-max)')
})

test.run()

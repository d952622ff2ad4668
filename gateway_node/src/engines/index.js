// Engine loader. The baileys and webjs modules are imported only when
// selected, so the sim engine never loads a WhatsApp library or a browser.

const LOADERS = {
  sim: () => import('./sim.js'),
  baileys: () => import('./baileys.js'),
  webjs: () => import('./webjs.js')
}

/** Returns the createEngine() function of the engine called `name`. */
export async function loadEngine (name) {
  const load = LOADERS[name]
  if (!load) {
    throw new Error(`Unknown WhatsApp engine ${JSON.stringify(name)}; use one of ${Object.keys(LOADERS).join(', ')}.`)
  }
  const module = await load()
  if (typeof module.createEngine !== 'function') {
    throw new Error(`The ${name} engine module does not export createEngine().`)
  }
  return module.createEngine
}

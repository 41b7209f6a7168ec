// The libraries the page is written with, served by the hub from its node_modules (routes.ts):
// preact renders (and escapes every text it is given), htm gives it tagged templates, so the page
// needs no build step.
import htm from './vendor/htm.mjs';
import { h, render } from './vendor/preact.mjs';

export { useCallback, useEffect, useMemo, useRef, useState } from './vendor/hooks.mjs';
export { render };

/** `html\`<div>${text}</div>\``: preact elements; interpolated values are text, never markup. */
export const html = htm.bind(h);

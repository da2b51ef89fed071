// Not built yet: this page is being written.
import { Notice, html, mount } from "console/lib.js";

mount(() => html`<${Notice}><p>This page is not ready yet.</p><//>`);

"""bokeh plots inside ipywidgets, with BokehJS inline (no CDN).

The dashboards' controls are ipywidgets; a plot is a ``json_item`` of a bokeh
layout inside an :class:`ipywidgets.HTML` value. The page loads BokehJS once
(:func:`setup_html`, from ``bokeh.resources.INLINE``: these machines and many
observatory networks reach no CDN) with a small embedder that watches the page
and renders every plot container that appears or is replaced — so a filter
change that sends new HTML re-draws the plot, without executing any script
sent through a widget.

Several plots of one page can share their data: :func:`document_html` makes
one bokeh document whose roots go to several places of the page (one copy of
the observations for every section that plots them).

In the browser, ``window.hcdcDash.source(plot, name)`` returns the data of a
named ColumnDataSource of a rendered plot (used by the tests to compare what
is drawn with the catalog).
"""

from __future__ import annotations

import html
import json

from bokeh.document import Document
from bokeh.embed import json_item
from bokeh.embed.util import standalone_docs_json_and_render_items
from bokeh.model import Model
from bokeh.resources import INLINE

#: INLINE resources, restricted to the BokehJS parts the dashboards use (core plotting only).
RESOURCES = INLINE.clone(components=["bokeh"])

_EMBEDDER = r"""
(function () {
  if (window.hcdcDash) { window.hcdcDash.run(); return; }
  var views = new Map();   // plot element -> bokeh document
  function forget() {
    views.forEach(function (doc, element) {
      if (element.isConnected) return;
      views.delete(element);
      var shared = false;
      views.forEach(function (other) { if (other === doc) shared = true; });
      var index = Bokeh.documents.indexOf(doc);
      if (!shared && index >= 0) Bokeh.documents.splice(index, 1);
    });
  }
  function payload(element) {
    try { return JSON.parse(element.querySelector('script[type="application/json"]').textContent); }
    catch (error) { element.setAttribute('data-state', 'error'); console.error('hcdc plot: bad payload', error); }
    return null;
  }
  function embedded(elements, promise) {
    var before = Bokeh.documents.length;
    elements.forEach(function (e) { e.setAttribute('data-state', 'embedding'); });
    promise.then(function () {
      var doc = Bokeh.documents[Bokeh.documents.length - 1];
      elements.forEach(function (e) {
        if (Bokeh.documents.length > before) views.set(e, doc);
        e.setAttribute('data-state', 'ready');
      });
    }).catch(function (error) {
      elements.forEach(function (e) { e.setAttribute('data-state', 'error'); });
      console.error('hcdc plot', error);
    });
  }
  // A first paint (the page as last built, sent before the live page) draws the plots of its first screen
  // first and the others once those are on screen, so that what the viewer sees comes first.
  var firstScreen = [];
  var restScheduled = false;
  function belowFirstScreen(elements) {
    if (window.hcdcFirstScreenDone) return false;
    return elements.every(function (e) {
      return e.closest('#hcdc-first-paint') !== null && e.getBoundingClientRect().top > window.innerHeight;
    });
  }
  function drawRest() {
    window.hcdcFirstScreenDone = true;
    document.querySelectorAll('[data-state="deferred"]').forEach(function (e) { e.removeAttribute('data-state'); });
    run();
  }
  function scheduleRest() {
    if (restScheduled) return;
    restScheduled = true;
    Promise.all(firstScreen).then(function () {
      requestAnimationFrame(function () { setTimeout(drawRest, 0); });
    });
  }
  function run() {
    if (!window.Bokeh || !Bokeh.embed) return;
    forget();
    // one plot, its own document
    document.querySelectorAll('div.hcdc-plot[data-kind="item"]:not([data-state])').forEach(function (element) {
      if (belowFirstScreen([element])) { element.setAttribute('data-state', 'deferred'); scheduleRest(); return; }
      var item = payload(element);
      if (!item) return;
      var promise = Bokeh.embed.embed_item(item, element.querySelector('.hcdc-plot-target'));
      if (!window.hcdcFirstScreenDone) firstScreen.push(promise.catch(function () {}));
      embedded([element], promise);
    });
    // one document, several places: wait until every place is in the page
    document.querySelectorAll('div.hcdc-doc:not([data-state])').forEach(function (holder) {
      var doc = payload(holder);
      if (!doc) return;
      var places = Object.values(doc.render_item.roots).map(function (id) { return document.getElementById(id); });
      if (places.some(function (p) { return p === null; })) return;
      if (belowFirstScreen(places)) {
        holder.setAttribute('data-state', 'deferred');
        places.forEach(function (e) { e.setAttribute('data-state', 'deferred'); });
        scheduleRest();
        return;
      }
      places.forEach(function (e) { e.removeAttribute('data-state'); });
      holder.setAttribute('data-state', 'ready');
      var promise = Bokeh.embed.embed_items(doc.docs_json, [doc.render_item]);
      if (!window.hcdcFirstScreenDone) firstScreen.push(promise.catch(function () {}));
      embedded(places, promise);
    });
  }
  function source(plot, name) {
    var result = null;
    views.forEach(function (doc, element) {
      if (!element.isConnected || element.getAttribute('data-plot') !== plot) return;
      var model = doc.get_model_by_name(name);
      if (model && model.data) {
        result = {};
        Object.keys(model.data).forEach(function (key) { result[key] = Array.from(model.data[key]); });
      }
    });
    return result;
  }
  window.hcdcDash = { run: run, source: source, views: views };
  new MutationObserver(run).observe(document.documentElement, { childList: true, subtree: true });
  run();
})();
"""


def setup_html() -> str:
    """BokehJS (inline) and the plot embedder: displayed once, first, by every dashboard."""
    return RESOURCES.render_js() + f'<script type="text/javascript">{_EMBEDDER}</script>'


def plot_html(model: Model, name: str) -> str:
    """A plot container for an ipywidgets.HTML value; ``name`` identifies it (``data-plot``) in the page."""
    payload = json.dumps(json_item(model)).replace("</", "<\\/")
    return (
        f'<div class="hcdc-plot" data-kind="item" data-plot="{html.escape(name)}">'
        f'<div class="hcdc-plot-target"></div><script type="application/json">{payload}</script></div>'
    )


def document_html(roots: dict[str, Model]) -> tuple[dict[str, str], str]:
    """One bokeh document whose roots go to several places of the page.

    Returns (``{name: placeholder HTML}``, payload HTML). Put each placeholder
    where its plot belongs and the payload anywhere — the plots are drawn once
    every placeholder is in the page, so set the payload last.
    """
    document = Document()
    models = list(roots.values())
    for model in models:
        document.add_root(model)
    docs_json, render_items = standalone_docs_json_and_render_items(models, suppress_callback_warning=True)
    item = render_items[0]
    places = {}
    for (name, _model), root in zip(roots.items(), item.roots):
        places[name] = (
            f'<div class="hcdc-plot" data-kind="root" data-plot="{html.escape(name)}" id="{root.elementid}"></div>'
        )
    payload = json.dumps({"docs_json": docs_json, "render_item": item.to_json()}).replace("</", "<\\/")
    return (
        places,
        f'<div class="hcdc-doc" style="display:none"><script type="application/json">{payload}</script></div>',
    )

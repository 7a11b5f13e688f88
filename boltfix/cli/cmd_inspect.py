"""``boltfix inspect``, ``pages`` and ``page``: what is in a file."""

from __future__ import annotations

import sys

import click

from boltfix.cli.cmd_wal import (
    data_dir_first,
    data_dir_options,
    optional_db_argument,
    render_prediction,
)
from boltfix.cli.options import db_argument, json_option, open_options
from boltfix.session import console, emit_json, guarded, open_db, progress_bar


@click.command()
@optional_db_argument
@json_option
@open_options
@data_dir_options
@guarded
def inspect(db, as_json, page_size, meta_index, data_dir, wal_dir):
    """Show what is in DB: metas, page counts, freelist, bucket tree, etcd facts.

    Works on damaged files: shows what can be read and says what cannot.
    With --data-dir, also what etcd will do when started on that data dir
    (DB defaults to its member/snap/db).
    """
    from boltfix.describe import describe
    from boltfix.views import render_inspect

    db, start = data_dir_first(db, data_dir, wal_dir)
    d = open_db(db, page_size, meta_index)
    with progress_bar("reading", d.page_limit, not as_json) as cb:
        info = describe(d, cb)
    if start is not None:
        info["data_dir"] = start.to_json()
    if as_json:
        emit_json(info)
    else:
        render_inspect(console(), info)
        if start is not None:
            render_prediction(console(), start)


@click.command()
@db_argument
@json_option
@click.option("--map", "as_map", is_flag=True,
              help="Draw the file as a grid of pages instead of listing them.")
@click.option("--map-svg", "map_svg", type=click.Path(dir_okay=False, path_type=str),
              default=None, metavar="FILE",
              help="Write the same picture, with a legend, to FILE as SVG (a new file).")
@click.option("--force", is_flag=True, help="Replace --map-svg's FILE if it exists "
              "(a regular file; never the input).")
@open_options
@guarded
def pages(db, as_json, as_map, map_svg, force, page_size, meta_index):
    """List every page: id, type, items, overflow and reachable/free/unreachable.

    With --map, draw the file as a grid of pages, a character and a colour
    per class: M meta, # reachable, F freelist, . free, ? unreachable, o the
    other meta's tree, X damaged, ! past the end of the file, - past the
    high-water mark.  A big file is drawn with each cell standing for a run
    of pages, showing the worst of them.  --map-svg FILE writes the same
    picture, with a legend, to FILE as SVG (with --map too, the grid is
    drawn as well).
    """
    from boltfix.describe import page_rows
    from boltfix.views import write_page_rows

    if as_json and (as_map or map_svg):
        raise click.UsageError("--json lists the pages; it does not go with --map or --map-svg")
    if not (as_map or map_svg):
        d = open_db(db, page_size, meta_index)
        write_page_rows(sys.stdout, page_rows(d), as_json)
        return
    from boltfix import pagemapview

    if map_svg:
        pagemapview.refuse_output(map_svg, db, force)  # before the walk
    d = open_db(db, page_size, meta_index)
    with progress_bar("walking", d.page_limit) as cb:
        survey = pagemapview.Survey(d, cb)
    if as_map:
        pagemapview.render(console(), survey.picture())
    if map_svg:
        pic = survey.svg_picture()
        size = pagemapview.write_svg(pic, map_svg, db, force)
        click.echo(f"boltfix pages: wrote {map_svg} ({size:,} bytes, {pic.total:,} pages, "
                   f"{pic.per_cell:,} per cell)", err=True)


def _app_rule(d):
    """The masking rule of the file's application for ``page`` views
    (containerd's, Vault's, Docker's ``view_secret_ranges``, by the file's
    layout as dump tells it), or None: a page does not say its bucket."""
    from boltfix import containerd as CD
    from boltfix import docker as DK
    from boltfix import vault as VT
    from boltfix.navigate import top_level_names

    try:
        top = top_level_names(d)
        if CD.looks_like_containerd(top) and CD.recognise(d) is not None:
            return CD.view_secret_ranges
        if VT.looks_like_vault(top):
            return VT.view_secret_ranges
        if DK.kind_of(top) is not None and DK.recognise(d) is not None:
            return DK.view_secret_ranges
    except Exception:  # no usable root (page views need none): the generic rules
        return None
    return None


@click.command()
@db_argument
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--hex", "as_hex", is_flag=True, help="Hexdump the page run instead of decoding it.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact password hashes and Kubernetes Secret data.")
@json_option
@open_options
@guarded
def page(db, ids, as_hex, show_secrets, as_json, page_size, meta_index):
    """Decode pages by id: header, elements, meta fields or freelist ids."""
    from boltfix.describe import masked_page_view, page_view
    from boltfix.render import hexdump_range
    from boltfix.views import render_page

    d = open_db(db, page_size, meta_index, need_root=False)  # pages by id: no walk
    app = None if show_secrets else _app_rule(d)
    views = []
    for pgid in ids:
        p = d.page(pgid)
        if as_hex:
            # streamed a piece at a time; secrets masked over the whole run
            # and the bytes around it (a hash or Secret may straddle a piece)
            click.echo(f"page {pgid} ({p.type}, {p.run_end - p.offset} bytes, "
                       f"offset {p.offset:#x})")
            for text in hexdump_range(d.buf, d.page_size, p.offset, p.run_end, show_secrets,
                                      app):
                click.echo(text, nl=False)
            continue
        views.append(page_view(d, pgid) if show_secrets else masked_page_view(d, p, pgid, app))
    if as_hex:
        return
    if as_json:
        emit_json(views)
    else:
        c = console()
        for v in views:
            render_page(c, v)

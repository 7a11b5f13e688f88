/*
 * boltfix._guard: survive a mapped input that shrinks while it is read.
 *
 * boltfix reads its input through a read-only mmap.  When the file is
 * truncated (or rewritten through `cp`, which truncates first) while it is
 * read, touching a mapped page past the new end raises SIGBUS, and the
 * default action kills the process: exit 135, nothing on stderr, a repair's
 * temporary file left behind.
 *
 * This module installs a SIGBUS handler (sigaction, SA_SIGINFO).  When the
 * faulting address lies inside a mapping registered with register(), the
 * handler maps anonymous zero pages over the rest of that mapping (MAP_FIXED:
 * the address range stays valid, the rest of the process is untouched), marks
 * the mapping as faulted, and returns: the faulting load runs again and reads
 * zeros.  Zeros are never a valid bbolt page (page id 0 is meta 0), so the
 * walk reports those pages as damage and ends; boltfix then sees the flag
 * (faulted()) at its next batch boundary and stops with "the input changed".
 * Any other SIGBUS goes to the handler that was there before (or the default
 * action), exactly as if this module were not loaded.
 *
 * The handler reads only a static array that is filled before the mapping
 * can fault, and calls only mmap and sigaction (async-signal-safe).  The
 * common path costs nothing: there is no check per access.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 64

struct range {
    volatile uintptr_t start, end; /* end rounded up to the page size */
    volatile sig_atomic_t faulted;
};

static struct range ranges[SLOTS];
static struct sigaction previous;
static int installed;
static uintptr_t pagesize = 4096;

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
    uintptr_t addr = (uintptr_t)info->si_addr;
    int i;
    (void)sig;
    (void)ctx;
    for (i = 0; i < SLOTS; i++) {
        uintptr_t start = ranges[i].start, end = ranges[i].end;
        if (start && start <= addr && addr < end) {
            uintptr_t from = addr & ~(pagesize - 1);
            void *p = mmap((void *)from, end - from, PROT_READ,
                           MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
                ranges[i].faulted = 1;
                return; /* the load runs again and reads zeros */
            }
            break;
        }
    }
    /* Not ours (or the remap failed): give the signal back to whoever had
     * it before; returning re-runs the access, which faults again. */
    sigaction(SIGBUS, &previous, NULL);
}

static int install(void)
{
    struct sigaction sa;
    long ps;
    if (installed)
        return 0;
    ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        pagesize = (uintptr_t)ps;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) != 0)
        return -1;
    installed = 1;
    return 0;
}

PyDoc_STRVAR(register_doc,
"register(buffer) -> slot\n\n"
"Guard the mapping behind buffer (an mmap or a memoryview of one, from its\n"
"start): a SIGBUS inside it maps zeros over the rest and sets its flag.\n"
"Returns the slot for faulted()/unregister(), or -1 when all are in use.");

static PyObject *py_register(PyObject *self, PyObject *args)
{
    Py_buffer v;
    int i, slot = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &v))
        return NULL;
    if (install() != 0) {
        PyBuffer_Release(&v);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (i = 0; i < SLOTS; i++) {
        if (!ranges[i].start) {
            uintptr_t start = (uintptr_t)v.buf;
            uintptr_t end = (start + (uintptr_t)v.len + pagesize - 1) & ~(pagesize - 1);
            ranges[i].faulted = 0;
            ranges[i].end = end;
            ranges[i].start = start; /* last: the handler skips a slot until set */
            slot = i;
            break;
        }
    }
    PyBuffer_Release(&v);
    return PyLong_FromLong(slot);
}

static int slot_arg(PyObject *args, int *slot)
{
    if (!PyArg_ParseTuple(args, "i", slot))
        return -1;
    if (*slot < 0 || *slot >= SLOTS) {
        PyErr_SetString(PyExc_ValueError, "no such guard slot");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(faulted_doc, "faulted(slot) -> bool: did the guarded mapping lose pages?");

static PyObject *py_faulted(PyObject *self, PyObject *args)
{
    int slot;
    (void)self;
    if (slot_arg(args, &slot))
        return NULL;
    return PyBool_FromLong(ranges[slot].faulted);
}

PyDoc_STRVAR(unregister_doc, "unregister(slot): stop guarding (before the map is closed).");

static PyObject *py_unregister(PyObject *self, PyObject *args)
{
    int slot;
    (void)self;
    if (slot_arg(args, &slot))
        return NULL;
    ranges[slot].start = 0;
    ranges[slot].end = 0;
    ranges[slot].faulted = 0;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"register", py_register, METH_VARARGS, register_doc},
    {"faulted", py_faulted, METH_VARARGS, faulted_doc},
    {"unregister", py_unregister, METH_VARARGS, unregister_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "boltfix._guard",
    "A SIGBUS guard for mapped input that shrinks while it is read (see guard.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__guard(void)
{
    return PyModule_Create(&module);
}

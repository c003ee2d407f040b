#include "core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/xmalloc.h"

struct job {
    struct job *next;
    worker_fn work, done;
    void *arg;
};

struct worker_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo_head, *todo_tail;
    struct job *done_head, *done_tail;
    pthread_t *threads;
    unsigned nthreads;
    unsigned busy;  /* loop thread only */
    bool stopping;
    int pipe_r, pipe_w;
};

static void push(struct job **head, struct job **tail, struct job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void *worker_main(void *vp)
{
    struct worker_pool *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->todo_head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct job *j = p->todo_head;
        if (j == NULL)
            break;
        p->todo_head = j->next;
        if (p->todo_head == NULL)
            p->todo_tail = NULL;
        pthread_mutex_unlock(&p->mu);

        j->work(j->arg);

        pthread_mutex_lock(&p->mu);
        bool was_empty = p->done_head == NULL;
        push(&p->done_head, &p->done_tail, j);
        if (was_empty) {
            char c = 1;
            while (write(p->pipe_w, &c, 1) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct worker_pool *worker_pool_new(unsigned nthreads)
{
    struct worker_pool *p = xcalloc(1, sizeof(*p));
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        abort();
    p->pipe_r = fds[0];
    p->pipe_w = fds[1];
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->nthreads = nthreads ? nthreads : 1;
    p->threads = xcalloc(p->nthreads, sizeof(pthread_t));
    for (unsigned i = 0; i < p->nthreads; i++)
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
            abort();
    return p;
}

int worker_pool_fd(const struct worker_pool *p)
{
    return p->pipe_r;
}

void worker_submit(struct worker_pool *p, worker_fn work, worker_fn done, void *arg)
{
    struct job *j = xmalloc(sizeof(*j));
    j->work = work;
    j->done = done;
    j->arg = arg;
    p->busy++;
    pthread_mutex_lock(&p->mu);
    push(&p->todo_head, &p->todo_tail, j);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

unsigned worker_pool_complete(struct worker_pool *p)
{
    /* Workers write a byte only when the done list was empty, so there is
     * rarely more than one; a byte left behind costs one spurious wake-up,
     * never a lost job, since the list is taken after the read. */
    char drain[64];
    ssize_t n;
    while ((n = read(p->pipe_r, drain, sizeof(drain))) == (ssize_t)sizeof(drain) ||
           (n < 0 && errno == EINTR))
        ;
    pthread_mutex_lock(&p->mu);
    struct job *j = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);

    unsigned count = 0;
    while (j) {
        struct job *next = j->next;
        p->busy--;
        if (j->done)
            j->done(j->arg);
        xfree(j);
        j = next;
        count++;
    }
    return count;
}

unsigned worker_pool_busy(const struct worker_pool *p)
{
    return p->busy;
}

void worker_pool_free(struct worker_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    worker_pool_complete(p);
    close(p->pipe_r);
    close(p->pipe_w);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    xfree(p->threads);
    xfree(p);
}

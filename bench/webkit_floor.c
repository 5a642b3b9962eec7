/* The floor for bench/desktop.sh: a bare WebKitGTK window (GTK 3, WebKit2GTK 4.1: what Tauri
 * uses on Linux) that loads a static page with a 50-row table and prints, from the page's first
 * animation frame, the wall-clock time in ms since the epoch: "rendered-epoch-ms N".
 * Built by the bench: cc webkit_floor.c $(pkg-config --cflags --libs webkit2gtk-4.1) */
#include <stdio.h>
#include <sys/time.h>
#include <gtk/gtk.h>
#include <webkit2/webkit2.h>

static void rendered(WebKitUserContentManager *m, WebKitJavascriptResult *r, gpointer data) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("rendered-epoch-ms %lld\n", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    fflush(stdout);
}

int main(int argc, char **argv) {
    gtk_init(&argc, &argv);
    GString *page = g_string_new("<!doctype html><html><body><table>");
    for (int i = 1; i <= 50; i++)
        g_string_append_printf(page, "<tr><td>c%d</td><td>running</td><td>busybox</td><td>-</td>"
                                     "<td>0.0 %%</td><td>400 KB</td></tr>", i);
    g_string_append(page, "</table><script>requestAnimationFrame(() => "
                          "window.webkit.messageHandlers.rendered.postMessage(1));</script></body></html>");
    WebKitUserContentManager *content = webkit_user_content_manager_new();
    g_signal_connect(content, "script-message-received::rendered", G_CALLBACK(rendered), NULL);
    webkit_user_content_manager_register_script_message_handler(content, "rendered");
    GtkWidget *view = webkit_web_view_new_with_user_content_manager(content);
    GtkWidget *window = gtk_window_new(GTK_WINDOW_TOPLEVEL);
    gtk_window_set_default_size(GTK_WINDOW(window), 1200, 780);
    gtk_container_add(GTK_CONTAINER(window), view);
    g_signal_connect(window, "destroy", G_CALLBACK(gtk_main_quit), NULL);
    gtk_widget_show_all(window);
    webkit_web_view_load_html(WEBKIT_WEB_VIEW(view), page->str, "about:blank");
    gtk_main();
    return 0;
}

/**
 * The directives of an http { } block that put nginx's temporary files in `directory`: nginx
 * creates each of them at start, used or not, and its compiled-in ones are the system's
 * (/var/lib/nginx on Debian), which a test or benchmark must not write to.
 */
export function nginxTemporaryPaths(directory: string): string[] {
  return [
    `client_body_temp_path ${directory}/body;`,
    ...['proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `${kind}_temp_path ${directory}/${kind};`),
  ];
}
